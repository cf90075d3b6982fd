-- Life OS: notes, journal entries and todos, each owned by a user.

CREATE TABLE notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text        NOT NULL DEFAULT 'note'
                           CHECK (kind IN ('note', 'journal', 'todo')),
    title      text        NOT NULL,
    body       text        NOT NULL DEFAULT '',
    tags       text[]      NOT NULL DEFAULT '{}',
    done       boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notes_user_created_idx ON notes (user_id, created_at DESC);
CREATE INDEX notes_tags_idx ON notes USING gin (tags);

INSERT INTO notes (user_id, kind, title, body, tags, done)
SELECT u.id, n.kind, n.title, n.body, n.tags, n.done
FROM (VALUES
    ('ada@example.com',   'todo',    'Renew passport',   'Photos first.',                 '{admin}'::text[],        false),
    ('ada@example.com',   'journal', 'Monday',           'Ran 5k. Read about engines.',   '{health,reading}',       false),
    ('grace@example.com', 'note',    'Compiler ideas',   'Words, not symbols.',           '{work}',                 false),
    ('grace@example.com', 'todo',    'Water the plants', '',                              '{home}',                 true)
) AS n (email, kind, title, body, tags, done)
JOIN users u ON u.email = n.email;
