"""The one exception type for problems the user can fix (bad paths, images, options)."""
from __future__ import annotations

_WORKER_PREFIX = "Caught UserError in DataLoader worker"


class UserError(Exception):
    """A problem with the user's input. Command-line scripts print its message as one
    line (naming the file and the fix) and exit with status 2, without a traceback."""


def user_message(error: UserError) -> str:
    """The one-line message of a UserError, also when a DataLoader worker raised it: PyTorch then
    re-raises it in the main process with the worker's whole traceback as its message."""
    text = str(error)
    if text.startswith(_WORKER_PREFIX):
        marker = "UserError: "
        last = text.strip().splitlines()[-1]
        return last[last.index(marker) + len(marker):] if marker in last else last
    return text


def not_weights_error(path: object, what: str, fix: str) -> UserError:
    """The one line for a file that ``torch.load(weights_only=True)`` refused to unpickle: it holds
    Python objects other than tensors (code, perhaps malicious), so nothing of it was run. The
    line never suggests loading it without that protection."""
    return UserError(f"{path}: not a valid {what}: it holds Python objects other than tensors, so it was "
                     f"not loaded (a damaged or malicious file); {fix}")
