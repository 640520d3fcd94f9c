"""What this installation says to and hears from the national cross-region platform
(全国流动人员人事档案跨地区管理服务平台): the versioned record of each transfer's state change
(schema.py, schemas/), the outbox that delivers them exactly once and in order (outbox.py), the
platform's HTTP protocol as a client speaks it (client.py) and the feed a receiving agency reads
to learn what waits for it (feed.py). Nothing here assumes which platform answers: the
in-project one (national_platform/) or the real one, configured by ARCHIVE_PLATFORM_URL."""
