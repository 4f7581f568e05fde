"""homefeed: a home-feed ML pipeline from logged events to ranked feeds.

The package layout follows the data: events -> log -> persister -> lake -> jobs -> models ->
serving, with the simulator feeding the front and reading the back. See ARCHITECTURE.md.
"""

__version__ = "0.1.0"
