-- A guardian belongs to the family, not to a school (issue 19): their sign-in is given by a one-time
-- enrolment link that the guardian redeems themselves, and every token issued, by anyone, is audited.

-- Enrolment links: a code that a school's staff (for a guardian who is theirs alone) or the city's
-- administrator hands a guardian who has no sign-in yet; redeeming it once issues the guardian's token.
-- Only a SHA-256 of the code is kept. The rows are the audit of the invitations (who made one, when,
-- until when, when it was redeemed and into which token): no foreign keys, they outlive the guardian,
-- the school and the token they name.
CREATE TABLE guardian_enrolments (
    id                    bigserial PRIMARY KEY,
    code_hash             bytea NOT NULL UNIQUE,
    guardian_id           bigint NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    expires_at            timestamptz NOT NULL,
    created_by_token_id   bigint NOT NULL,
    created_by_role       text NOT NULL,     -- 'admin' or 'school'
    created_by_school_id  bigint,            -- the staff member's school
    created_by_label      text NOT NULL DEFAULT '',
    redeemed_at           timestamptz,
    token_id              bigint             -- the guardian token the redemption issued
);
CREATE INDEX guardian_enrolments_guardian_idx ON guardian_enrolments (guardian_id, created_at DESC);

-- Every token issued: for whom (role and binding, as api_tokens has them) and by whom: an API caller
-- (their token, role and school), an enrolment link (its id), the command line, or code that issues a
-- token as part of something else ('system': the demo, the tests' own fixtures). Written in the same
-- statement as the token itself (tracker.store.tokens.create_token), so no token escapes it. No
-- foreign keys: the log outlives what it names.
CREATE TABLE token_issues (
    id                  bigserial PRIMARY KEY,
    at                  timestamptz NOT NULL DEFAULT now(),
    token_id            bigint NOT NULL,
    role                text NOT NULL,
    school_id           bigint,
    guardian_id         bigint,
    tag_id              text,
    label               text NOT NULL DEFAULT '',
    expires_at          timestamptz,
    issued_via          text NOT NULL CHECK (issued_via IN ('api', 'enrolment', 'cli', 'system', 'before-audit')),
    issuer_token_id     bigint,              -- 'api': the caller's token
    issuer_role         text,
    issuer_school_id    bigint,
    issuer_label        text NOT NULL DEFAULT '',
    enrolment_id        bigint               -- 'enrolment': the link redeemed
);
CREATE INDEX token_issues_at_idx ON token_issues (at DESC);
CREATE INDEX token_issues_guardian_idx ON token_issues (guardian_id) WHERE guardian_id IS NOT NULL;
CREATE INDEX token_issues_school_idx ON token_issues (school_id) WHERE school_id IS NOT NULL;
CREATE INDEX token_issues_issuer_school_idx ON token_issues (issuer_school_id) WHERE issuer_school_id IS NOT NULL;

-- The tokens issued before this migration: their issuer was never recorded, and the log says so.
INSERT INTO token_issues (at, token_id, role, school_id, guardian_id, tag_id, label, expires_at, issued_via)
SELECT created_at, id, role, school_id, guardian_id, tag_id, label, expires_at, 'before-audit'
  FROM api_tokens ORDER BY id;
