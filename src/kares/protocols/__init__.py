"""Wire formats: each module turns one outside format's bytes into calls of a
domain's service and its results back into bytes (OwnTracks, Overland, GPX and
GeoJSON files, the kids'-watch frames and their TCP server; later CalDAV,
FHIR and the Matrix client API). Protocols stand above the domains: they
import domains, and no domain imports them, so a domain can speak several
formats and a format can be replaced without touching the domain."""
