"""Local services for the demo and the tests: a private PostgreSQL cluster, an S3 endpoint
(moto server), and preflight checks that say what is missing and how to fix it."""
