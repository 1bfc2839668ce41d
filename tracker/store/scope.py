"""Who may see and change which registry rows, as SQL conditions: the one place the access rules live.

Every scoped query starts with ``WITH {ME}`` and passes :func:`me_args` as its first three arguments
($1 school, $2 guardian, $3 tag of the caller); the conditions below read them from ``me``. A row the
caller may not see is simply not found, so the API answers 404 whether it exists or not; a forbidden
action on a row the caller sees is 403 with the reason.

| resource  | admin | school staff                                  | guardian                    | device |
| --------- | ----- | --------------------------------------------- | --------------------------- | ------ |
| school    | all   | their school (read, update)                   | their children's (read)     | -      |
| route     | all   | their school's                                | their children's (read)     | -      |
| zone      | all   | all (read)                                    | all (read)                  | -      |
| reader    | all   | their school's                                | -                           | -      |
| child     | all   | their school's                                | their own (read)            | -      |
| tag       | all   | their school's children's                     | their children's (read)     | own    |
| guardian  | all   | read: registered by their school, or a        | themselves (read, update)   | -      |
|           |       | guardian of one of their school's children;   |                             |        |
|           |       | update, delete, enrol: only theirs alone (*)  |                             |        |
| token     | all   | list, revoke: their school's staff and tags', | their own (list, revoke)    | -      |
|           |       | and guardians' whose every child is there;    |                             |        |
|           |       | issue: staff and device, never a guardian's   |                             |        |
| token log | all   | issued for or by their school, or through     | issued for them             | -      |
|           |       | their school's enrolment links                |                             |        |

(*) A guardian belongs to the family, not to a school. A school owns its link rows (the
``child_guardians`` of its children) and may register guardians; the guardian's own record (name,
phone, language, channels) and their sign-in belong to the guardian and the city's administrator. A
school's staff may change or delete a guardian's record, or send them an enrolment link (their first
sign-in), only while the guardian is *theirs alone*: every child of the guardian is at that school
(deleting: and the school registered them), and the guardian has never signed in (never had a
guardian token). Once a guardian is linked to children of two schools, or has signed in, no school's
staff can issue them a token, change where their alerts go, or delete them: only the guardian and the
city's administrator can, so nothing one school's staff does changes what another school's child's
guardians see or receive. Staff may still unlink any guardian from their own children.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.store.tokens import Principal

ME = "me AS (SELECT $1::bigint AS school_id, $2::bigint AS guardian_id, $3::text AS tag_id)"


def me_args(who: Principal) -> tuple[int | None, int | None, str | None]:
    return (who.school_id, who.guardian_id, who.tag_id)


def _guardian_children() -> str:
    return "(SELECT child_id FROM child_guardians WHERE guardian_id = me.guardian_id)"


def schools(who: Principal, s: str = "s", *, write: bool = False) -> str:
    if who.role == "admin":
        return "true"
    if who.role == "school":
        return f"{s}.id = me.school_id"
    if who.role == "guardian" and not write:
        return f"{s}.id IN (SELECT school_id FROM children WHERE id IN {_guardian_children()})"
    return "false"


def routes(who: Principal, r: str = "r", *, write: bool = False) -> str:
    if who.role == "admin":
        return "true"
    if who.role == "school":
        return f"{r}.school_id = me.school_id"
    if who.role == "guardian" and not write:
        return f"{r}.id IN (SELECT route_id FROM children WHERE id IN {_guardian_children()})"
    return "false"


def zones(who: Principal, z: str = "z", *, write: bool = False) -> str:
    if who.role == "admin":
        return "true"
    return "true" if who.role in ("school", "guardian") and not write else "false"


def readers(who: Principal, d: str = "d", *, write: bool = False) -> str:
    if who.role == "admin":
        return "true"
    return f"{d}.school_id = me.school_id" if who.role == "school" else "false"


def children(who: Principal, c: str = "c", *, write: bool = False) -> str:
    if who.role == "admin":
        return "true"
    if who.role == "school":
        return f"{c}.school_id = me.school_id"
    if who.role == "guardian" and not write:
        return f"{c}.id IN {_guardian_children()}"
    return "false"


def tags(who: Principal, t: str = "t", *, write: bool = False) -> str:
    if who.role == "admin":
        return "true"
    if who.role == "school":
        return f"{t}.child_id IN (SELECT id FROM children WHERE school_id = me.school_id)"
    if who.role == "guardian" and not write:
        return f"{t}.child_id IN {_guardian_children()}"
    if who.role == "device" and not write:
        return f"{t}.id = me.tag_id"
    return "false"


def guardians(who: Principal, g: str = "g", *, write: bool = False) -> str:
    """Guardians the caller sees; with ``write``, whose record the caller may change (see (*) above)."""
    if who.role == "admin":
        return "true"
    if who.role == "school":
        seen = (
            f"({g}.school_id = me.school_id OR {g}.id IN (SELECT cg.guardian_id FROM child_guardians cg"
            " JOIN children c2 ON c2.id = cg.child_id WHERE c2.school_id = me.school_id))"
        )
        return f"({seen} AND {guardian_theirs_alone(g)})" if write else seen
    if who.role == "guardian":
        return f"{g}.id = me.guardian_id"
    return "false"


def guardian_children_elsewhere(g: str = "g") -> str:
    """The guardian has a child at a school other than the calling staff member's."""
    return (
        "EXISTS (SELECT 1 FROM child_guardians cg_e JOIN children c_e ON c_e.id = cg_e.child_id"
        f" WHERE cg_e.guardian_id = {g}.id AND c_e.school_id <> me.school_id)"
    )


def guardian_signed_in(g: str = "g") -> str:
    """The guardian has signed in: has ever had a guardian token (revoked and expired ones count; only
    deleting the guardian deletes them)."""
    return f"EXISTS (SELECT 1 FROM api_tokens k_s WHERE k_s.role = 'guardian' AND k_s.guardian_id = {g}.id)"


def guardian_theirs_alone(g: str = "g") -> str:
    """The guardian is the calling school's alone: no child elsewhere, never signed in."""
    return f"(NOT {guardian_children_elsewhere(g)} AND NOT {guardian_signed_in(g)})"


def tokens(who: Principal, k: str = "k") -> str:
    """Tokens the caller may list and revoke. School staff: their school's staff tokens, their tags'
    device tokens, and the tokens of the guardians whose every child is at their school (a lost phone;
    revoking takes nothing from another school's family). A shared guardian's tokens are theirs and the
    administrator's."""
    if who.role == "admin":
        return "true"
    if who.role == "school":
        return (
            f"(({k}.role = 'school' AND {k}.school_id = me.school_id)"
            f" OR ({k}.role = 'guardian' AND {k}.guardian_id IN (SELECT g.id FROM guardians g"
            f"   WHERE {guardians(who, 'g')} AND NOT {guardian_children_elsewhere('g')}))"
            f" OR ({k}.role = 'device' AND {k}.tag_id IN (SELECT t.id FROM tags t WHERE {tags(who, 't')})))"
        )
    if who.role == "guardian":
        return f"({k}.role = 'guardian' AND {k}.guardian_id = me.guardian_id)"
    return "false"


def token_issues(who: Principal, l: str = "l") -> str:  # noqa: E741 (the log's alias, as in audit.py)
    """Entries of the token-issue log the caller may read: admin all; school staff the tokens issued by
    their school's staff, for their school (staff tokens, their tags' device tokens) or through an
    enrolment link their school sent; a guardian the tokens issued in their name."""
    if who.role == "admin":
        return "true"
    if who.role == "school":
        return (
            f"({l}.issuer_school_id = me.school_id OR ({l}.role = 'school' AND {l}.school_id = me.school_id)"
            f" OR {l}.tag_id IN (SELECT t.id FROM tags t WHERE {tags(who, 't')})"
            f" OR {l}.enrolment_id IN (SELECT e.id FROM guardian_enrolments e"
            "   WHERE e.created_by_school_id = me.school_id))"
        )
    if who.role == "guardian":
        return f"({l}.role = 'guardian' AND {l}.guardian_id = me.guardian_id)"
    return "false"


# --- time-bounded visibility: a child moving school ------------------------------------------------------
# A child's school has periods: the current one from children.school_since (NULL: from the start), the
# earlier ones in child_school_history [since, until). The rule (docs/design.md, "Children moving
# school"): a school's staff see what happened to a child while the child was at their school, and
# nothing else. So the old school keeps read access to the track and the alerts of its periods (read
# like any staff read: audited), and loses everything from the move on (positions, status, alerts, the
# child's record); the new school sees the child's record, and of its positions, status and alerts
# only what is from the move on. Guardians (the family) and the city's administrator see all of it.
# These conditions are added to the ones above; for the other roles they hold always.


def during_callers_school(who: Principal, c: str = "c", at: str = "now()") -> str:
    """The instant ``at`` falls in a period when the child ``c`` (a children row) was at the caller's
    school (school staff; any other role: always true)."""
    if who.role != "school":
        return "true"
    return (
        f"(({c}.school_id = me.school_id AND ({c}.school_since IS NULL OR {at} >= {c}.school_since))"
        f" OR EXISTS (SELECT 1 FROM child_school_history h_p WHERE h_p.child_id = {c}.id"
        f" AND h_p.school_id = me.school_id AND (h_p.since IS NULL OR {at} >= h_p.since)"
        f" AND {at} < h_p.until))"
    )


def children_ever(who: Principal, c: str = "c") -> str:
    """Children whose history the caller may read (with :func:`during_callers_school` for what of it):
    those of :func:`children`, and for school staff the children who were once at their school."""
    if who.role == "school":
        return (
            f"({children(who, c)} OR {c}.id IN"
            " (SELECT h_e.child_id FROM child_school_history h_e WHERE h_e.school_id = me.school_id))"
        )
    return children(who, c)


def school_at(c: str = "c", at: str = "now()") -> str:
    """The school the child ``c`` was at at the instant ``at`` (an SQL expression; no caller: what an
    alert's escalation reaches is the school of the child when the alert opened)."""
    return (
        f"coalesce((SELECT h_s.school_id FROM child_school_history h_s WHERE h_s.child_id = {c}.id"
        f" AND (h_s.since IS NULL OR {at} >= h_s.since) AND {at} < h_s.until"
        " ORDER BY h_s.until DESC LIMIT 1),"
        f" {c}.school_id)"
    )


def periods_overlap(who: Principal, c: str, start: str, end: str) -> str:
    """A period of the child ``c`` at the caller's school overlaps [start, end) (school staff; any other
    role: always true)."""
    if who.role != "school":
        return "true"
    return (
        f"(({c}.school_id = me.school_id AND ({c}.school_since IS NULL OR {c}.school_since < {end}))"
        f" OR EXISTS (SELECT 1 FROM child_school_history h_o WHERE h_o.child_id = {c}.id"
        f" AND h_o.school_id = me.school_id AND (h_o.since IS NULL OR h_o.since < {end})"
        f" AND h_o.until > {start} AND h_o.until > coalesce(h_o.since, '-infinity')))"
    )
