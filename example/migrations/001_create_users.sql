-- Life OS: the people whose lives are being organised.
-- Applied by migrate.sh in one transaction together with its
-- schema_migrations row: no BEGIN/COMMIT in here.

CREATE TABLE users (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text        NOT NULL,
    display_name text        NOT NULL,
    timezone     text        NOT NULL DEFAULT 'UTC',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_lower CHECK (email = lower(email)),
    CONSTRAINT users_email_key UNIQUE (email)
);

INSERT INTO users (email, display_name, timezone) VALUES
    ('ada@example.com',   'Ada',   'Europe/London'),
    ('grace@example.com', 'Grace', 'America/New_York');
