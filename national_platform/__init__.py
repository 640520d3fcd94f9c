"""The national cross-region platform (全国流动人员人事档案跨地区管理服务平台) as this project runs it
for its demo and tests: small, but the real protocol (docs/national-platform.md) on its own
PostgreSQL database. It accepts transfer records from registered agencies (schema, sender and
signature checked against its own registry, de-duplicated by idempotency key, one transfer's
records in order), and lets each agency read the records addressed to it or sent by it as a
feed it polls (long-polling: it hears within a fraction of a second).

Nothing in the pipeline assumes this one: an installation talks to whichever platform
ARCHIVE_PLATFORM_URL names."""
