"""Atlas sessions and their files: create, read, list, delete; upload evidence files (streamed from
disk) and find an attachment by name after an upload whose outcome is unknown."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.atlas.api import AtlasApi, AtlasRetryPolicy, segment
from edge_agent.atlas.errors import AtlasProtocolError, invalid
from edge_agent.atlas.models import Attachment, Session

# One file to upload: (file name as Atlas shows it, bytes or a path streamed from disk, content type).
UploadFile = tuple[str, bytes | Path, str]


class SessionCalls(AtlasApi):
    async def create_session(self, title: str | None = None) -> Session:
        body: dict[str, Any] = {} if title is None else {"title": title}
        return self._model(Session, await self.call("POST", "/sessions", json_body=body), "POST", "/sessions")

    async def get_session(self, session_id: str, *, retry: AtlasRetryPolicy | None = None) -> Session:
        """`retry=NO_RETRY`: one request, e.g. to probe whether Atlas answers at all."""
        path = f"/sessions/{segment(session_id)}"
        return self._model(Session, await self.call("GET", path, retry=retry), "GET", path)

    async def list_sessions(self) -> list[Session]:
        return self._page(Session, await self.call("GET", "/sessions"), "GET", "/sessions").items

    async def delete_session(self, session_id: str) -> None:
        await self.call("DELETE", f"/sessions/{segment(session_id)}", need_body=False)

    async def upload_files(self, session_id: str, files: Sequence[UploadFile]) -> list[Attachment]:
        """One multipart POST, one `files` part per file, in order; one attachment per file back.

        Paths are streamed from disk in chunks by aiohttp, not read whole. A missing path raises
        FileNotFoundError before anything is sent.
        """
        path = f"/sessions/{segment(session_id)}/upload-files"
        problems = [] if files else ["at least one file is needed"]
        problems += [f"file {i}: empty file name" for i, (name, _, _) in enumerate(files) if not name]
        if problems:
            raise invalid("POST", path, problems)
        missing = [name for name, content, _ in files if isinstance(content, Path) and not content.is_file()]
        if missing:
            raise FileNotFoundError(f"no such file to upload: {', '.join(missing)}")
        parts = [("files", name, content, content_type) for name, content, content_type in files]
        body = await self.call("POST", path, files=parts, read_timeout=self._upload_timeout)
        if not isinstance(body, list):
            raise AtlasProtocolError(
                "POST", path, reason="expected a list of attachments", outcome_unknown=True
            )
        return [self._model(Attachment, item, "POST", path) for item in body]

    async def delete_attachment(self, session_id: str, attachment_id: str) -> None:
        path = f"/sessions/{segment(session_id)}/attachments/{segment(attachment_id)}"
        await self.call("DELETE", path, need_body=False)

    async def find_attachment_by_name(self, session_id: str, name: str) -> Attachment | None:
        """The session's attachment called `name` that has an id (the newest one if an ambiguous
        upload made several), or None. The outbox's lookup after an upload of unknown outcome."""
        session = await self.get_session(session_id)
        matches = [a for a in session.attachments if a.attachment_name == name and a.attachment_id]
        if not matches:
            return None
        # Stable: by creation time, then by position; the timestamp shape sorts as text.
        return max(enumerate(matches), key=lambda im: (im[1].attachment_created_at or "", im[0]))[1]
