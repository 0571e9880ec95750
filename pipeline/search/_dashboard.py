"""optuna-dashboard over a study storage, read-only, safe beside a running sweep.

The dashboard is given the storage as the sweep opens it (the same journal backend and lock,
the same patient proxy client), wrapped so that every write is refused: it can show the
studies, trials and plots while the workers append, and can neither delete a study, nor tell a
trial, nor write a note into the journal the sweep is writing.
"""

from __future__ import annotations

from typing import Any

from optuna.storages import BaseStorage

READ_ONLY = "read-only: `python -m pipeline dashboard` shows studies and changes nothing"


class ReadOnlyStorage(BaseStorage):
    """A storage's reads, passed through; its writes refused with :class:`PermissionError`."""

    def __init__(self, storage: BaseStorage) -> None:
        self._storage = storage

    # reads
    def get_all_studies(self) -> Any:
        return self._storage.get_all_studies()

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._storage.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._storage.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> Any:
        return self._storage.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._storage.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._storage.get_study_system_attrs(study_id)

    def get_trial(self, trial_id: int) -> Any:
        return self._storage.get_trial(trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> Any:
        return self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)

    def get_n_trials(self, study_id: int, state: Any = None) -> int:
        return self._storage.get_n_trials(study_id, state)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    # writes
    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(READ_ONLY)

    create_new_study = _refuse
    delete_study = _refuse
    set_study_user_attr = _refuse
    set_study_system_attr = _refuse
    create_new_trial = _refuse
    set_trial_param = _refuse
    set_trial_state_values = _refuse
    set_trial_intermediate_value = _refuse
    set_trial_user_attr = _refuse
    set_trial_system_attr = _refuse


def read_only_storage(url: str) -> ReadOnlyStorage:
    """The storage at ``url`` (a journal file, ``grpc://``, an RDB URL), opened as a sweep
    opens it, read-only."""
    from optuna.storages import RDBStorage

    from pipeline.search._study import make_storage

    storage = make_storage(url)
    if isinstance(storage, str):  # an RDB URL: its tables exist (checked before), none made
        storage = RDBStorage(storage, skip_table_creation=True)
    return ReadOnlyStorage(storage)


def serve_dashboard(url: str, port: int, host: str = "127.0.0.1") -> None:
    """optuna-dashboard over the storage at ``url`` on ``host:port``, until Ctrl-C or SIGTERM.

    Served from a thread while the main thread waits: Python's WSGI server catches every
    exception of a request, so a Ctrl-C that lands while a request is answered would be lost
    if the main thread served."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # no line per request
            pass

    app = optuna_dashboard.wsgi(read_only_storage(url))
    server = make_server(host, port, app, handler_class=QuietHandler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        serving.join()
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, which the command takes as Ctrl-C)
        pass
    finally:
        server.shutdown()
        server.server_close()
