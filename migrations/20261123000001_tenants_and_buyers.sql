-- Merchants (tenants) and buyers. API keys and passwords are stored only as hashes.
CREATE TABLE merchants (
    id             uuid PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    api_key_hash   bytea NOT NULL UNIQUE,
    webhook_url    text,
    webhook_secret text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE buyers (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX buyers_email_key ON buyers (lower(email));

CREATE TABLE products (
    id          uuid PRIMARY KEY,
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    title       text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_by_merchant ON products (merchant_id, id);
