"""Each script in examples/ runs as a user would run it, and prints exactly what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "create_infrastructure.py": """\
creating host1 (db)
creating host2 (storage)
creating host3 (web_server) using host1-db, host2-storage
plan: stopped / success
  host1 runs after: (nothing)
  host2 runs after: (nothing)
  host3 runs after: host1, host2
  host1: uuid=host1-db
  host2: uuid=host2-storage
  host3: uuid=host3-web_server
""",
    "subscriptions.py": """\
Running core action: ['a', 'b']
Running another core action: a
Running plugin action: ['a', 'b']
plan: stopped / success
  ACoreAppAction: triggered
  AnotherCoreAppAction: planned by ACoreAppAction
  APluginAction: subscribed to ACoreAppAction
plugin output: {'message': 'trigger succeeded'}
""",
    "action_anatomy.py": """\
planned: planned
  plan steps: AnAction, SubAction
  run steps: SubAction, AnAction
  finalize steps: AnAction
  persisted input: {'id': 2, 'name': 'web'}
SubAction.run: preparing db
AnAction.run: input id=2 name='web'
AnAction.finalize: web-2
executed: stopped / success
  output: {'uuid': 'web-2'}
invalid input: input of __main__.AnAction#1 is invalid: id: Input should be a valid integer, \
unable to parse string as an integer
""",
    "suspend_external_service.py": """\
AnAction: starting the synchronization, then suspending
AnExternalService: synchronizing
AnAction: woken by {'progress': 50}
while the service works: plan running, step suspended, {'progress': 50}
AnAction: woken by 'done'
plan: stopped / success
output: {'progress': 100, 'success': True}
""",
    "polling_job.py": """\
started job-1 to sync dynaflow
poll 1: running 25%
poll 2: job API unreachable (tolerated)
poll 3: running 75%
poll 4: finished 100%
plan: stopped / success
task: {'job': 'job-1', 'state': 'finished', 'progress': 100}
poll attempts: {'total': 4, 'failed': 0}
""",
    "failure_recovery.py": """\
Build: building release 1.2
UploadDocs: uploading to docs.example.com
PublishImage: publishing app-1.2.tar.gz
plan: paused / error
  Build: success
  UploadDocs: error (ConnectionError: docs.example.com is unreachable)
  PublishImage: success
  AnnounceDocs: pending
  Notify: pending
skipping step 5
UploadDocs.on_skip: the docs will be uploaded by hand
plan: paused / warning
  Build: success
  UploadDocs: skipped (ConnectionError: docs.example.com is unreachable)
  PublishImage: success
  AnnounceDocs: skipped
  Notify: pending
resuming
Notify: released registry.example.com/app:1.2
Notify.finalize: release recorded
plan: stopped / warning
  Build: success
  UploadDocs: skipped (ConnectionError: docs.example.com is unreachable)
  PublishImage: success
  AnnounceDocs: skipped
  Notify: success
history of step 5: step running, step error, operator skip, step skipped
""",
    "import_records.py": """\
plan: paused / error
sub-plans: {'paused': 1, 'success': 59}
paused child: record 7 has no name
after resume: stopped / success
sub-plans: {'success': 60}
records imported: 60 of 60
never more than 5 at once: True
""",
    "app_transaction.py": """\
order 1: stored with its plan
order 2: payment declined; nothing was stored
order 1 (kettle): shipped (TRACK-1)
plan ShipOrder: stopped / success
""",
    "fastapi_app.py": """\
POST /orders 1: {'id': 1, 'plan': 'stored'}
POST /orders 2: 402 {'detail': 'payment declined'}
GET /orders/1: {'id': 1, 'status': 'shipped', 'plan': 'stopped / success'}
GET /orders/2: 404
""",
}
#: arguments an example runs with here (a smaller count than its default)
ARGS = {"import_records.py": ["60"]}


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_output(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *ARGS.get(name, [])],
        cwd=tmp_path,  # an example must not depend on (or litter) the working directory
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED[name]
    assert result.stderr == ""
