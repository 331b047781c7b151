"""Where a release comes from: a local folder, or a Hugging Face Hub id fetched with
``huggingface_hub.snapshot_download`` (nothing from it is ever run: no ``trust_remote_code``)."""
from __future__ import annotations

import re
from pathlib import Path

from utils.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # owner/name, as the Hub spells them


def looks_like_hub_id(source: str | Path) -> bool:
    """True for ``owner/name`` that is not a path on this machine (a .pt file is never a Hub id)."""
    text = str(source)
    return bool(HUB_ID.match(text)) and not Path(text).exists() and not text.endswith((".pt", ".pth"))


def download_release(repo_id: str) -> Path:
    """The local snapshot of the Hub repository ``repo_id`` (downloaded, or from the cache when offline);
    an unreachable or unknown id is one line naming it."""
    # huggingface_hub is imported only when a Hub id is read: every other command runs without it
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(repo_id))
    except (OSError, ValueError, HfHubHTTPError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{repo_id}: no such local folder, and the Hugging Face Hub id {repo_id} could not be "
                        f"fetched ({type(e).__name__}: {reason[:160]}); check the id and the network (HF_HUB_OFFLINE), "
                        "or pass a local release folder or a .pt checkpoint") from None
