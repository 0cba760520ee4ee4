"""pytest wiring: options, the ``vcluster`` marker, hooks and fixtures. No cluster calls here.

Fixtures:
    ``vcluster_host`` (session): the host cluster (:class:`~pytest_vcluster.host.kind.HostInfo`).
    ``vcluster`` (function): a fresh vcluster for this test.
    ``vcluster_worker`` (function): the vcluster shared by all tests of this process (xdist
    worker) that ask for the same version and values.
    ``vcluster_factory`` (function): a callable creating more vclusters in one test.
    ``vcluster_version`` and ``vcluster_values`` (function): inputs, overridable in a conftest.
    ``vcluster_settings`` (session): the resolved
    :class:`~pytest_vcluster.settings.config.Settings`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import os
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

import pytest

from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.lifecycle import VClusterManager
from pytest_vcluster.core.errors import (
    CommandError,
    ConfigError,
    HostError,
    ToolNotFoundError,
    VClusterError,
)
from pytest_vcluster.core.interrupts import interrupts
from pytest_vcluster.core.progress import Progress
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.diagnostics.bundle import DiagnosticsCollector, junit_properties
from pytest_vcluster.diagnostics.header import header_lines
from pytest_vcluster.host.acquire import Host, make_host
from pytest_vcluster.host.images import ImageLoadError
from pytest_vcluster.host.kind import HostInfo
from pytest_vcluster.host.locks import default_state_root
from pytest_vcluster.pool.factory import VClusterFactory, WorkerPool
from pytest_vcluster.pool.lookahead import ClusterPool, Upcoming
from pytest_vcluster.pool.stats import Stats
from pytest_vcluster.pool.xdist_workers import leftover_hint, stop_and_wait, worker_id
from pytest_vcluster.settings.config import OPTIONS, Settings, TeardownMode, resolve_settings
from pytest_vcluster.settings.markers import MARKER_HELP, MarkerArgs, check_values, parse_marker
from pytest_vcluster.settings.request import ClusterRequest, VClusterSpec
from pytest_vcluster.settings.values import deep_merge
from pytest_vcluster.settings.versions import KubeVersion

__all__ = [
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "pytest_runtest_protocol",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "pytest_terminal_summary",
    "pytest_testnodedown",
    "pytest_unconfigure",
    "vcluster",
    "vcluster_factory",
    "vcluster_host",
    "vcluster_settings",
    "vcluster_values",
    "vcluster_version",
    "vcluster_worker",
]

SETTINGS_KEY = pytest.StashKey[Settings]()
HOST_KEY = pytest.StashKey[Host]()
RUN_ID_KEY = pytest.StashKey[str]()
MANAGERS_KEY = pytest.StashKey[list[VClusterManager]]()
STATS_KEY = pytest.StashKey[Stats]()
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
#: Per item: the cluster request resolved at collection, and the spec predicted from it.
REQUEST_KEY = pytest.StashKey[ClusterRequest]()
PREDICTED_KEY = pytest.StashKey[VClusterSpec | None]()
POOL_KEY = pytest.StashKey[ClusterPool]()
PROGRESS_KEY = pytest.StashKey[Progress]()
CURRENT_KEY = pytest.StashKey[pytest.Item]()
#: pytest-xdist's worker interactor, which holds this worker's queue of items.
INTERACTOR_KEY = pytest.StashKey[Any]()
INDEX_KEY = pytest.StashKey[dict[str, int]]()
#: Per item: what its failure report needs: the collector, the factory, the worker's cluster,
#: and the clusters whose JUnit properties are recorded.
DIAGNOSTICS_KEY = pytest.StashKey[DiagnosticsCollector]()
FACTORY_KEY = pytest.StashKey[VClusterFactory]()
WORKER_CLUSTER_KEY = pytest.StashKey[VCluster]()
PROPERTIES_KEY = pytest.StashKey[list[str]]()
#: xdist controller: its workers (pytest-xdist's ``WorkerController`` objects).
NODES_KEY = pytest.StashKey[list[Any]]()
#: xdist controller: the workers whose stats are merged already (by object id).
MERGED_KEY = pytest.StashKey[set[int]]()

#: Fixtures whose use makes a test take part in the version matrix.
VCLUSTER_FIXTURES = frozenset(
    {"vcluster", "vcluster_worker", "vcluster_factory", "vcluster_version"}
)


# -- options and configuration --------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--vcluster-*`` options and their ``vcluster_*`` ini twins."""
    group = parser.getgroup("vcluster", "virtual Kubernetes clusters (pytest-vcluster)")
    for spec in OPTIONS:
        where = f"[ini: {spec.ini}; env: {spec.env}"
        where += f"; default: {spec.default}]" if spec.default is not None else "]"
        kwargs: dict[str, Any] = {"dest": spec.dest, "default": None, "metavar": spec.metavar}
        if spec.kind == "paths":
            kwargs["action"] = "append"
        elif spec.kind == "bool":
            # A plain flag: an optional value would swallow a following test path.
            kwargs.update(action="store_const", const="true")
            del kwargs["metavar"]
        group.addoption(spec.flag, help=f"{spec.help} {where}", **kwargs)
        if spec.kind == "paths":
            parser.addini(spec.ini, spec.help, type="linelist", default=[])
        else:
            parser.addini(spec.ini, spec.help, type="string", default="")


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _worker_id(config: pytest.Config) -> str:
    workerinput: Mapping[str, Any] | None = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "master"


def _is_xdist_controller(config: pytest.Config) -> bool:
    # What pytest-xdist itself checks: any distribution mode, however it was asked for
    # (-n, --dist with --tx), makes this process the controller.
    return not _is_xdist_worker(config) and getattr(config.option, "dist", "no") != "no"


def _new_run_id(config: pytest.Config) -> str:
    workerinput: Mapping[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput:
        for key in ("vcluster_run_id", "testrunuid"):
            if workerinput.get(key):
                return str(workerinput[key])
    return uuid.uuid4().hex


def _run_id(config: pytest.Config) -> str:
    return config.stash[RUN_ID_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and resolve the settings once; bad values are usage errors."""
    config.addinivalue_line("markers", MARKER_HELP)
    cli = {spec.dest: config.getoption(spec.dest) for spec in OPTIONS}
    ini = {spec.ini: config.getini(spec.ini) for spec in OPTIONS}
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    try:
        settings = resolve_settings(
            cli, ini, os.environ, cli_dir=config.invocation_params.dir, ini_dir=ini_dir
        )
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-vcluster: {exc}") from None
    config.stash[SETTINGS_KEY] = settings
    config.stash[STATS_KEY] = Stats()
    config.stash[RUN_ID_KEY] = run_id = _new_run_id(config)
    managers: list[VClusterManager] = []
    config.stash[MANAGERS_KEY] = managers
    config.stash[PROGRESS_KEY] = progress = Progress(_terminal_writer(config))
    config.stash[HOST_KEY] = make_host(
        settings,
        state_root=settings.state_dir or default_state_root(os.environ),
        run_id=run_id,
        worker=_worker_id(config),
        progress=progress,
    )

    def stop_run(reason: str) -> None:
        session = getattr(config, "_vcluster_session", None)
        if session is not None:
            session.shouldstop = reason

    controller = _XdistController(config) if _is_xdist_controller(config) else None
    if controller is not None:
        config.pluginmanager.register(controller, "vcluster-xdist-controller")

    def leftovers() -> list[str]:
        if controller is not None:
            return controller.leftovers()
        return [line for manager in managers for line in manager.leftovers()]

    interrupts.install(stop_run=stop_run, leftovers=leftovers)


class _XdistController:
    """xdist controller only: after an interrupt, wait for the workers' teardown before
    pytest-xdist shuts them down (see :mod:`~pytest_vcluster.pool.xdist_workers`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.waiting_for: list[str] | None = None

    def leftovers(self) -> list[str]:
        if self.waiting_for is None:
            return []
        return leftover_hint(self.config.stash[SETTINGS_KEY], self.waiting_for)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before pytest-xdist's own (which stops the workers): wait for them to finish."""
        nodes = session.config.stash.get(NODES_KEY, [])
        if not interrupts.interrupted or interrupts.abandon.is_set() or not nodes:
            return
        settings = session.config.stash[SETTINGS_KEY]
        deadline = Deadline(settings.delete_timeout, stop=interrupts.abandon)
        self.waiting_for = [worker_id(node) for node in nodes]
        progress = session.config.stash[PROGRESS_KEY]
        with interrupts.shielded(), progress.waiting("the xdist workers to tear down"):
            still = stop_and_wait(nodes, deadline)
        self.waiting_for = still if still else None
        for node in nodes:
            _merge_worker_stats(session.config, node)
        if still and not interrupts.abandon.is_set():
            progress.note(
                f"xdist worker(s) {', '.join(still)} still tearing down after "
                f"{settings.delete_timeout:g}s: pytest-xdist stops them now"
            )


def _terminal_writer(config: pytest.Config) -> Callable[[str], None] | None:
    """Where progress lines go: the terminal, unless quiet or an xdist worker (no terminal)."""
    if _is_xdist_worker(config) or config.get_verbosity() < 0:
        return None

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        # During setup pytest captures fd 1, the terminal included: step out of it, as
        # pytest's own live logging does.
        capture = config.pluginmanager.get_plugin("capturemanager")
        paused = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with paused:
            reporter.write_line(line)

    return write


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give SIGINT and SIGTERM back."""
    del config
    interrupts.uninstall()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """xdist controller: every worker labels its clusters with the controller's run id."""
    workerinput: dict[str, Any] | None = getattr(node, "workerinput", None)
    config: pytest.Config | None = getattr(node, "config", None)
    if workerinput is not None and config is not None:
        workerinput["vcluster_run_id"] = config.stash[RUN_ID_KEY]
        config.stash.setdefault(NODES_KEY, []).append(node)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The xdist controller holds the host for its workers until every one is done."""
    config = session.config
    config._vcluster_session = session  # type: ignore[attr-defined]
    if _is_xdist_controller(config) and not config.option.collectonly:
        try:
            config.stash[HOST_KEY].hold()
        except HostError as exc:
            raise pytest.UsageError(f"pytest-vcluster: {exc}") from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show the host and the tool versions in effect."""
    host = config.stash[HOST_KEY]
    return header_lines(config.stash[SETTINGS_KEY], host.header_line(), host.tools)


# -- collection: marker validation and the version matrix ----------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Validate the ``vcluster`` marker and parametrize over versions."""
    definition = metafunc.definition
    marker = definition.get_closest_marker("vcluster")
    error: ConfigError | None = None
    args = MarkerArgs()
    if marker is not None:
        try:
            args = parse_marker(marker.args, marker.kwargs, definition.path.parent)
        except ConfigError as exc:
            error = exc
    if error is not None:
        # A collection error without traceback: names the test and the argument, and works
        # the same under xdist (a UsageError raised in a worker would crash it instead).
        pytest.fail(f"usage error in {definition.nodeid}: {error}", pytrace=False)
    if not VCLUSTER_FIXTURES.intersection(metafunc.fixturenames):
        return
    if args.version is not None:
        return
    versions = args.versions or metafunc.config.stash[SETTINGS_KEY].versions
    if versions:
        metafunc.parametrize(
            "vcluster_version",
            list(versions),
            ids=[version.test_id for version in versions],
            indirect=True,
        )


def _values_fixture_is_default(fixturedef: pytest.FixtureDef[Any]) -> bool:
    return getattr(fixturedef.func, "__module__", None) == __name__


def _predict_values(item: pytest.Item) -> Mapping[str, Any] | None:
    """The item's ``vcluster_values`` when they can be known before setup, else ``None``.

    The plugin's own fixture gives ``{}``; an override that takes no arguments and returns
    (not yields) a mapping is called now. The prediction only decides what is prepared ahead:
    at setup the real fixture value builds the spec, and a mismatch creates a new cluster.
    """
    info = getattr(item, "_fixtureinfo", None)
    definitions: Sequence[pytest.FixtureDef[Any]] = (
        info.name2fixturedefs.get("vcluster_values", ()) if info else ()
    )
    if not definitions:
        return {}
    fixturedef = definitions[-1]
    if _values_fixture_is_default(fixturedef):
        return {}
    func = fixturedef.func
    if fixturedef.argnames or inspect.isgeneratorfunction(func):
        return None
    try:
        predicted = func()
    except Exception:  # noqa: BLE001 - unpredictable values: this test is not prepared ahead
        return None
    return predicted if isinstance(predicted, Mapping) else None


def _cluster_request(item: pytest.Item) -> ClusterRequest:
    marker = item.get_closest_marker("vcluster")
    args = parse_marker(marker.args, marker.kwargs, item.path.parent) if marker else MarkerArgs()
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get("vcluster_version") if callspec is not None else None
    version = param if isinstance(param, KubeVersion) else args.version
    return ClusterRequest(
        nodeid=item.nodeid,
        name=item.name,
        marker=args,
        version=version,
        extra_values=_predict_values(item),
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Resolve each test's cluster request once and predict the spec of its ``vcluster``."""
    settings = config.stash[SETTINGS_KEY]
    for item in items:
        if not VCLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            continue
        try:
            request = _cluster_request(item)
        except ConfigError:
            continue  # reported as a collection error by pytest_generate_tests already
        item.stash[REQUEST_KEY] = request
        predicted = None
        needs_fresh = "vcluster" in getattr(item, "fixturenames", ())
        # A test marked skip never sets its fixtures up: preparing for it would be waste.
        if needs_fresh and request.extra_values is not None and not item.get_closest_marker("skip"):
            try:
                predicted = request.spec(settings)
            except ConfigError:
                predicted = None  # not prepared ahead; the test's setup reports the error
        item.stash[PREDICTED_KEY] = predicted
    config.stash[INDEX_KEY] = {item.nodeid: index for index, item in enumerate(items)}


def _xdist_queue(config: pytest.Config) -> list[int] | None:
    """Indices of the items the xdist controller has handed this worker and it has not run."""
    interactor = config.stash.get(INTERACTOR_KEY, None)
    if interactor is None:
        # Looked up once (at the first test): this runs before every test.
        found = [
            plugin
            for plugin in config.pluginmanager.get_plugins()
            if getattr(plugin, "torun", None) is not None and hasattr(plugin, "nextitem_index")
        ]
        if not found:
            return None
        interactor = config.stash[INTERACTOR_KEY] = found[0]
    indices: list[int] = []
    next_index = interactor.nextitem_index
    if isinstance(next_index, int):
        indices.append(next_index)
    with interactor.torun.lock() as pending:
        indices += [index for index in pending if isinstance(index, int)]
    return indices


def _upcoming(session: pytest.Session) -> list[Upcoming]:
    """The tests this process runs next, the current one first, with their predicted specs."""
    config = session.config
    current = config.stash.get(CURRENT_KEY, None)
    if current is None:
        return []
    items = session.items
    queued = _xdist_queue(config) if _is_xdist_worker(config) else None
    if queued is not None:
        following = [items[index] for index in queued if index < len(items)]
    else:
        position = config.stash.get(INDEX_KEY, {}).get(current.nodeid)
        following = items[position + 1 :] if position is not None else []
    return [(item.nodeid, item.stash.get(PREDICTED_KEY, None)) for item in [current, *following]]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Before each test: let the pool prepare clusters for the tests after it."""
    del nextitem  # the xdist queue (or the item list) says more than one item ahead
    item.config.stash[CURRENT_KEY] = item
    pool = item.config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.plan()


# -- reports, summary, xdist -----------------------------------------------------------------


def _clusters(item: pytest.Item) -> list[VCluster]:
    """The clusters this test has now (a factory forgets its own once torn down)."""
    factory = item.stash.get(FACTORY_KEY, None)
    worker = item.stash.get(WORKER_CLUSTER_KEY, None)
    return [*([worker] if worker else []), *(factory.created if factory else [])]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Keep each phase's report on the item, so teardown knows whether the test failed;
    record each cluster's JUnit properties; add diagnostics to a failed setup or call."""
    clusters = _clusters(item)
    # Before the report is made: it copies the item's properties (JUnit XML reads them from
    # the teardown report, when the factory has forgotten its clusters already).
    recorded = item.stash.setdefault(PROPERTIES_KEY, [])
    for handle in clusters:
        if handle.name not in recorded:
            item.user_properties += junit_properties(handle, len(recorded))
            recorded.append(handle.name)
    hidden = _hide_plugin_frames(item, call)
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if hidden and report.failed and call.excinfo is not None:
        # Nothing but the plugin's own frames: the message alone, as pytest.fail(pytrace=False).
        report.longrepr = (
            f"{call.excinfo.typename}: {call.excinfo.value}\n"
            "(the plugin's traceback: run with --full-trace or -vv)"
        )
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    collector = item.stash.get(DIAGNOSTICS_KEY, None)
    # The call's report comes before the teardown: the clusters still exist. After Ctrl-C
    # the user wants the run to end, not diagnostics.
    wanted = report.failed and report.when in ("setup", "call") and not interrupts.interrupted
    if wanted and collector is not None:
        error = call.excinfo.value if call.excinfo else None
        report.sections += collector.sections(item.nodeid, clusters, error)


def _package_dir(name: str) -> str:
    # Found without importing it: the API client is heavy, and this runs at import time.
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None and spec.origin else ""
    return os.path.dirname(origin) + os.sep


#: Frames a plugin error is shown without: the plugin's own and the API client's below it.
_INTERNAL_ROOTS = tuple(_package_dir(name) for name in ("pytest_vcluster", "kubernetes", "urllib3"))
#: pytest's and pluggy's frames, which pytest hides itself.
_PYTEST_ROOTS = tuple(_package_dir(name) for name in ("_pytest", "pluggy"))


def _hide_plugin_frames(item: pytest.Item, call: pytest.CallInfo[None]) -> bool:
    """Cut the plugin's frames from a plugin error's traceback, as pytest does its own.

    The frames are unlinked from the exception's traceback itself: pytest rebuilds the
    traceback from the test function's frame on, so a filtered copy would not last. Returns
    True when no frame but pytest's is left (the report then shows the message alone). With
    ``--full-trace``, ``-vv`` or ``--pdb`` the whole traceback and the cause chain stay.
    """
    excinfo = call.excinfo
    if excinfo is None or not isinstance(excinfo.value, VClusterError):
        return False
    config = item.config
    # A debugger (--pdb) gets every frame: it walks the same traceback object.
    if config.getoption("fulltrace", False) or config.getoption("usepdb", False):
        return False
    if config.get_verbosity() >= 2:
        return False
    kept: list[TracebackType] = []
    frame: TracebackType | None = excinfo.tb
    while frame is not None:
        code_path = frame.tb_frame.f_code.co_filename
        hidden = "__tracebackhide__" in frame.tb_frame.f_locals
        if not hidden and not code_path.startswith(_INTERNAL_ROOTS):
            kept.append(frame)
        frame = frame.tb_next
    # The causes (the API's exception, a subprocess error) are in the message already.
    excinfo.value.__suppress_context__ = True
    excinfo.value.__cause__ = None
    if not any(not f.tb_frame.f_code.co_filename.startswith(_PYTEST_ROOTS) for f in kept):
        return True
    for before, after in itertools.pairwise(kept):
        before.tb_next = after
    kept[-1].tb_next = None
    excinfo.traceback = type(excinfo.traceback)(kept[0])
    return False


def _failed(item: pytest.Item) -> bool:
    return any(report.failed for report in item.stash.get(REPORTS_KEY, {}).values())


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Workers hand their stats to the controller; the controller removes the shared host.

    Runs last, after pytest has torn down the session fixtures (the pool waits there for
    every background teardown), so the stats are complete.
    """
    config = session.config
    stats = config.stash.get(STATS_KEY, None)
    settings = config.stash.get(SETTINGS_KEY, None)
    if _is_xdist_worker(config):
        if stats is not None:
            config.workeroutput["vcluster_stats"] = stats.to_dict()  # type: ignore[attr-defined]
        return
    if settings is None or config.option.collectonly:
        return
    if _is_xdist_controller(config):
        with interrupts.shielded():
            config.stash[HOST_KEY].release()
    if settings.records is not None and stats is not None:
        try:
            stats.write(settings.records)
        except OSError as exc:
            # The run's outcome stands; only the file is missing, and the summary says so.
            stats.note(f"cannot write --vcluster-records to {settings.records}: {exc}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist controller: merge a finished worker's stats."""
    config: pytest.Config | None = getattr(node, "config", None)
    if config is not None:
        _merge_worker_stats(config, node)


def _merge_worker_stats(config: pytest.Config, node: object) -> None:
    """Merge a worker's stats once: after an interrupt pytest-xdist no longer reports a
    finished worker, and the controller merges what it sent itself."""
    output: dict[str, Any] = getattr(node, "workeroutput", None) or {}
    merged = config.stash.setdefault(MERGED_KEY, set())
    if output.get("vcluster_stats") and id(node) not in merged:
        merged.add(id(node))
        config.stash[STATS_KEY].merge(output["vcluster_stats"])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """List vclusters created, resumed, paused, deleted and their ready times."""
    stats = config.stash.get(STATS_KEY, None)
    # An interrupted xdist run says so even when its workers had not made anything yet.
    interrupted_workers = interrupts.interrupted and bool(config.stash.get(NODES_KEY, None))
    if stats is None or (stats.empty and not interrupted_workers):
        return
    terminalreporter.write_sep("-", "pytest-vcluster")
    host = config.stash.get(HOST_KEY, None)
    host_line = host.summary_line() if host is not None else None
    if host_line:
        terminalreporter.write_line(host_line)
    for line in stats.summary_lines():
        terminalreporter.write_line(line)
    if interrupts.interrupted:
        how = (
            "stopped waiting (the list of what is left was printed above)"
            if interrupts.abandon.is_set()
            else "tore down every vcluster this run made, each by its teardown mode"
        )
        terminalreporter.write_line(f"interrupted by {interrupts.signal_name}: {how}")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def vcluster_settings(pytestconfig: pytest.Config) -> Settings:
    """The settings in effect (command line > ini > environment > default)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def vcluster_host(pytestconfig: pytest.Config) -> Iterator[HostInfo]:
    """The host cluster: a kind cluster shared by all workers, or the existing cluster.

    When it cannot be had, every test that needs it errors with the same one line: the
    error is raised once per process and pytest re-raises it for the others.
    """
    host = pytestconfig.stash[HOST_KEY]
    failure: str | None = None
    try:
        info = host.acquire()
    except (HostError, ToolNotFoundError, CommandError, ImageLoadError) as exc:
        failure = f"pytest-vcluster: {exc}"
    if failure is not None:
        # Outside the except block, so the report is this one line and not a chain.
        pytest.fail(failure, pytrace=False)
    try:
        yield info
    finally:
        with interrupts.shielded():
            host.release()


@pytest.fixture(scope="session")
def _vcluster_manager(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    vcluster_settings: Settings,
    vcluster_host: HostInfo,
) -> Iterator[VClusterManager]:
    workdir = tmp_path_factory.mktemp("vcluster")
    workdir.chmod(0o700)
    manager = VClusterManager(
        settings=vcluster_settings,
        host=vcluster_host,
        run_id=_run_id(pytestconfig),
        worker=_worker_id(pytestconfig),
        workdir=workdir,
        stats=pytestconfig.stash[STATS_KEY],
    )
    managers = pytestconfig.stash[MANAGERS_KEY]
    managers.append(manager)
    try:
        # One process per run reaps (under xdist the first worker); it is idempotent anyway.
        reaped = manager.start(
            reap_leftovers=vcluster_settings.reap and _worker_id(pytestconfig) in ("master", "gw0")
        )
        if reaped is not None and (reaped.removed or reaped.preserved or reaped.errors):
            pytestconfig.stash[STATS_KEY].note(reaped.summary())
        yield manager
    finally:
        with interrupts.shielded():
            manager.close()
        managers.remove(manager)


@pytest.fixture(scope="session")
def _vcluster_diagnostics(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    vcluster_settings: Settings,
    _vcluster_manager: VClusterManager,
) -> DiagnosticsCollector:
    root = vcluster_settings.diagnostics_dir
    return DiagnosticsCollector(
        host_api=lambda: _vcluster_manager.host_api,
        root=root or tmp_path_factory.getbasetemp() / "vcluster-diagnostics",
        run_id=_run_id(pytestconfig),
        worker=_worker_id(pytestconfig),
    )


@pytest.fixture(scope="session")
def _vcluster_pool(
    request: pytest.FixtureRequest,
    vcluster_settings: Settings,
    _vcluster_manager: VClusterManager,
) -> Iterator[ClusterPool]:
    session = request.session
    pool = ClusterPool(
        _vcluster_manager,
        lambda: _upcoming(session),
        lookahead=vcluster_settings.lookahead,
        parallel=vcluster_settings.parallel_creates,
        progress=request.config.stash[PROGRESS_KEY],
        teardown_of=lambda nodeid: _teardown_mode_of(session, nodeid),
    )
    request.config.stash[POOL_KEY] = pool
    pool.plan()
    yield pool
    del request.config.stash[POOL_KEY]
    pool.close()


@pytest.fixture(scope="session")
def _vcluster_worker_pool(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    vcluster_settings: Settings,
    _vcluster_manager: VClusterManager,
) -> Iterator[WorkerPool]:
    pool = WorkerPool(_vcluster_manager, vcluster_settings, _worker_id(pytestconfig))
    yield pool
    pool.close(failed=request.session.testsfailed > 0)


def _teardown_mode_of(session: pytest.Session, nodeid: str) -> TeardownMode:
    """The teardown mode of the test ``nodeid`` (its marker's, else the setting)."""
    settings = session.config.stash[SETTINGS_KEY]
    index = session.config.stash.get(INDEX_KEY, {}).get(nodeid)
    if index is None or index >= len(session.items):
        return settings.teardown
    found = session.items[index].stash.get(REQUEST_KEY, None)
    return found.teardown_mode(settings) if found is not None else settings.teardown


def _request(request: pytest.FixtureRequest) -> ClusterRequest:
    # Resolved at collection (pytest_collection_modifyitems); a test collected in an unusual
    # way (a plugin adding items later) is resolved now.
    item = request.node
    found = item.stash.get(REQUEST_KEY, None)
    return found if found is not None else _cluster_request(item)


def _marker(request: pytest.FixtureRequest) -> MarkerArgs:
    return _request(request).marker


@pytest.fixture
def vcluster_version(request: pytest.FixtureRequest) -> KubeVersion | None:
    """The Kubernetes version for this test: matrix parameter, else marker, else chart default."""
    param: KubeVersion | None = getattr(request, "param", None)
    return param if param is not None else _marker(request).version


#: How errors name an override of the ``vcluster_values`` fixture.
_VALUES_FIXTURE = "the vcluster_values fixture"


@pytest.fixture
def vcluster_values() -> Mapping[str, Any]:
    """Extra chart values for this test's vclusters (below the marker's); override to set."""
    return {}


@pytest.fixture
def vcluster_factory(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    vcluster_settings: Settings,
    vcluster_version: KubeVersion | None,
    vcluster_values: Mapping[str, Any],
    _vcluster_pool: ClusterPool,
    _vcluster_diagnostics: DiagnosticsCollector,
) -> Iterator[VClusterFactory]:
    """Create extra vclusters in one test: ``vcluster_factory(version=..., values=...)``."""
    cluster_request = replace(
        _request(request),
        version=vcluster_version,
        extra_values=check_values(vcluster_values, _VALUES_FIXTURE) or {},
    )
    factory = VClusterFactory(
        pool=_vcluster_pool,
        settings=vcluster_settings,
        request=cluster_request,
        worker=_worker_id(pytestconfig),
        stats=pytestconfig.stash[STATS_KEY],
    )
    request.node.stash[FACTORY_KEY] = factory
    request.node.stash[DIAGNOSTICS_KEY] = _vcluster_diagnostics
    yield factory
    factory.close(failed=_failed(request.node))


@pytest.fixture
def vcluster(vcluster_factory: VClusterFactory) -> VCluster:
    """A fresh vcluster for this test, torn down after it (``--vcluster-teardown``)."""
    return vcluster_factory()


@pytest.fixture
def vcluster_worker(
    request: pytest.FixtureRequest,
    vcluster_version: KubeVersion | None,
    vcluster_values: Mapping[str, Any],
    _vcluster_worker_pool: WorkerPool,
    _vcluster_diagnostics: DiagnosticsCollector,
) -> VCluster:
    """The vcluster this process (xdist worker) shares between tests of the same spec."""
    marker = _marker(request)
    values = deep_merge(check_values(vcluster_values, _VALUES_FIXTURE) or {}, marker.values or {})
    request.node.stash[DIAGNOSTICS_KEY] = _vcluster_diagnostics
    handle = _vcluster_worker_pool.get(vcluster_version, values or None, marker.values_file)
    request.node.stash[WORKER_CLUSTER_KEY] = handle
    return handle
