-- Signed pulses seen inside the replay window: a signature is accepted once.
CREATE TABLE pulse_signatures (
    fingerprint TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX pulse_signatures_expiry ON pulse_signatures (expires_at);
