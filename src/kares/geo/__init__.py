"""Geometry and track algorithms, pure: points in, answers out, no database and
no domain. Distances on the sphere, track simplification by zoom, stays and
trips with their transport modes and driving events, and the cell-tower and
Wi-Fi resolver. The location domain (and anything else) calls them."""
