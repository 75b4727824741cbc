"Shared fixtures for the integration tests: the real third-party data beside the repository."
import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='session')
def shared():
    "`../shared/data`, or skip (a failure when BAILANDO_REQUIRE_SHARED is set, as CI does)."
    root = Path(os.environ.get('BAILANDO_SHARED_DATA', REPO.parent/'shared'/'data'))
    if root.exists(): return root
    msg = f'real test data not found at {root} (it lies in ../shared/data beside the repository)'
    if os.environ.get('BAILANDO_REQUIRE_SHARED'): pytest.fail(msg)
    pytest.skip(msg)
