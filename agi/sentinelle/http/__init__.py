"""The HTTP API of `sentinelle serve`: consents, refusals and dispositions
in, dry-run decisions and lead-list scrubs out (README.md, "HTTP API").
`sentinelle.http.server.HttpServer` is the listener."""
