"""The Atlas emulator's sessions and their attachments (the files uploaded into them), and its issues
with their comments and files: what the agent files and links. Pages: atlas-sessions.md,
atlas-issues.md."""

from __future__ import annotations

from collections import Counter

from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas_records import (
    USER_EMAIL,
    Attachment,
    Comment,
    InvalidReference,
    Issue,
    IssueFile,
    Json,
    NotFound,
    Session,
    Tenant,
    envelope,
    get_or_404,
    new_id,
    page,
)

PRIORITY_ORDER: tuple[m.IssuePriority, ...] = ("high", "medium", "low")
ACTIVE_STATUSES = frozenset({"open", "in_progress"})


class Sessions(Tenant):
    """Sessions and the attachments uploaded into them."""

    def create_session(self, body: m.SessionCreate) -> Json:
        ids = [ref.attachment_id for ref in body.attachments]
        for i, attachment_id in enumerate(ids):
            if attachment_id not in self.attachments:
                raise InvalidReference(("attachments", i, "attachment_id"), attachment_id, "attachment id")
        session = Session(new_id(), body.title, self._now(), attachment_ids=ids)
        self.sessions[session.session_id] = session
        return session.render(self._session_attachments(session))

    def list_sessions(self) -> Json:
        # The list omits `attachments`: only the single-session GET carries them (sessions page).
        return envelope([s.render(None) for s in self._ordered(self.sessions.values())])

    def get_session(self, session_id: str) -> Json:
        session = get_or_404(self.sessions, session_id)
        return session.render(self._session_attachments(session))

    def update_session(self, session_id: str, body: m.SessionUpdate) -> Json:
        session = get_or_404(self.sessions, session_id)
        if body.title is not None:
            session.title = body.title
        if body.description is not None:
            session.description = body.description
        if body.starred is not None and body.starred != session.is_starred:
            session.is_starred = body.starred
            session.starred_at = self._now() if body.starred else None
        return session.render(self._session_attachments(session))

    def delete_session(self, session_id: str) -> None:
        session = get_or_404(self.sessions, session_id)
        del self.sessions[session_id]
        for attachment_id in session.attachment_ids:
            attachment = self.attachments.get(attachment_id)
            if attachment is not None and attachment.session_id == session_id:
                del self.attachments[attachment_id]

    def upload(self, session_id: str, files: list[tuple[str, str, bytes]]) -> list[Json]:
        """`files` are (filename, content type, bytes), one attachment each, in upload order."""
        session = get_or_404(self.sessions, session_id)
        created = []
        for name, content_type, data in files:
            attachment = Attachment(new_id(), name, session_id, content_type, data, self._now())
            if self._quirks().null_attachment_id:
                # The page allows a null id: the file is described but not attached (nothing to link).
                created.append({**attachment.render(), "attachment_id": None})
                continue
            self.attachments[attachment.attachment_id] = attachment
            session.attachment_ids.append(attachment.attachment_id)
            created.append(attachment.render())
        return created

    def delete_attachment(self, session_id: str, attachment_id: str) -> None:
        session = get_or_404(self.sessions, session_id)
        if attachment_id not in session.attachment_ids:
            raise NotFound(attachment_id)
        session.attachment_ids.remove(attachment_id)
        attachment = self.attachments.get(attachment_id)
        if attachment is not None and attachment.session_id == session_id:
            del self.attachments[attachment_id]

    def attachment_bytes(self, attachment_id: str) -> bytes:
        return get_or_404(self.attachments, attachment_id).data


class Issues(Tenant):
    """Issues, their comments, and the files Atlas attaches to them."""

    def _render_issue(self, issue: Issue) -> Json:
        f = issue.fields
        sessions = [self.sessions[s] for s in f.session_ids if s in self.sessions]
        return {
            "uuid": issue.uuid,
            "title": f.title,
            "description": f.description,
            "status": None if self._quirks().null_issue_status else f.status,
            "priority": f.priority,
            "tags": f.tags,
            "owner": f.owner,
            "resolution_summary": f.resolution_summary,
            "created_by": USER_EMAIL,
            "created_at": issue.created_at,
            # INFERRED: associated sessions are rendered like list items (no nested attachments).
            "sessions": [s.render(None) for s in sessions],
            "attachments": [self.attachments[a].render() for a in f.attachment_ids if a in self.attachments],
            "session_attachments": [a for s in sessions for a in self._session_attachments(s)],
            "job_run_id": None,
        }

    def create_issue(self, body: m.IssueCreate) -> Json:
        self._check_attachments(body.attachment_ids, ("attachment_ids",))
        for i, session_id in enumerate(body.session_ids):
            if session_id not in self.sessions:
                raise InvalidReference(("session_ids", i), session_id, "session id")
        issue = Issue(new_id(), body.model_copy(deep=True), self._now())
        self.issues[issue.uuid] = issue
        return self._render_issue(issue)

    def list_issues(self, query: m.IssueListQuery) -> Json:
        # INFERRED: newest first.
        matches = [
            self._render_issue(issue)
            for issue in self._ordered(self.issues.values())
            if (not query.status or issue.fields.status in query.status)
            and (not query.priority or issue.fields.priority in query.priority)
        ]
        return page(matches, query.limit, query.offset)

    def get_issue(self, issue_id: str) -> Json:
        return self._render_issue(get_or_404(self.issues, issue_id))

    def update_issue(self, issue_id: str, body: m.IssueUpdate) -> Json:
        issue = get_or_404(self.issues, issue_id)
        sent = body.model_dump(include=body.model_fields_set)
        # A null for a field that is never null in the response is taken as "not sent".
        changes = {
            k: v
            for k, v in sent.items()
            if v is not None or k in ("status", "priority", "resolution_summary")
        }
        issue.fields = issue.fields.model_copy(update=changes)
        return self._render_issue(issue)

    def delete_issue(self, issue_id: str) -> None:
        get_or_404(self.issues, issue_id)
        del self.issues[issue_id]

    def metrics(self) -> Json:
        active = Counter(
            i.fields.priority for i in self.issues.values() if i.fields.status in ACTIVE_STATUSES
        )
        data = [{"label": p, "value": active.get(p, 0), "color": None} for p in PRIORITY_ORDER]
        chart = {"title": "Active Issues", "data": data, "colors": None, "display_config": None}
        return {"metrics": [{"chart_type": "pie_chart", "chart_data": chart}]}

    def _render_comment(self, comment: Comment) -> Json:
        return {
            "uuid": comment.uuid,
            "content": comment.content,
            "attachments": [
                self.attachments[a].render() for a in comment.attachment_ids if a in self.attachments
            ],
            "created_by": USER_EMAIL,
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "is_edited": comment.is_edited,
            "is_deleted": comment.is_deleted,
            "reactions": [],
        }

    def list_comments(self, issue_id: str, query: m.CommentListQuery) -> Json:
        issue = get_or_404(self.issues, issue_id)
        # Comments are listed oldest first (a thread); the quirk does not apply to them.
        return page([self._render_comment(c) for c in issue.comments], query.limit, query.offset)

    def add_comment(self, issue_id: str, body: m.CommentCreate) -> Json:
        issue = get_or_404(self.issues, issue_id)
        self._check_attachments(body.attachment_ids, ("attachment_ids",))
        now = self._now()
        comment = Comment(new_id(), body.content, list(body.attachment_ids), now, now)
        issue.comments.append(comment)
        return self._render_comment(comment)

    def _comment(self, issue_id: str, comment_id: str) -> tuple[Issue, Comment]:
        issue = get_or_404(self.issues, issue_id)
        for comment in issue.comments:
            if comment.uuid == comment_id:
                return issue, comment
        raise NotFound(comment_id)

    def update_comment(self, issue_id: str, comment_id: str, body: m.CommentUpdate) -> Json:
        _, comment = self._comment(issue_id, comment_id)
        comment.content = body.content
        comment.updated_at = self._now()
        comment.is_edited = True
        return self._render_comment(comment)

    def delete_comment(self, issue_id: str, comment_id: str) -> None:
        # INFERRED: Atlas has an `is_deleted` flag (a soft delete). By default the emulator drops the
        # comment from the list; with the quirk on it stays there, flagged, as the flag suggests.
        issue, comment = self._comment(issue_id, comment_id)
        if self._quirks().soft_delete_comments:
            comment.is_deleted = True
        else:
            issue.comments.remove(comment)

    def issue_files(self, issue_id: str, query: m.IssueFilesQuery) -> list[Json]:
        issue = get_or_404(self.issues, issue_id)
        return [f.render() for f in issue.files if query.file_type is None or f.file_type == query.file_type]

    def add_issue_file(self, issue_id: str, file_name: str, file_type: str, attachment_id: str) -> Json:
        """Atlas attaches files (e.g. troubleshooting plans) itself; no API call does. Demo/test helper."""
        issue = get_or_404(self.issues, issue_id)
        record = IssueFile(new_id(), file_name, file_type, attachment_id, self._now())
        issue.files.append(record)
        return record.render()
