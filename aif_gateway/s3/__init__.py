"""The protocol layer: S3's REST API over HTTP (routing, authentication, bodies, XML, errors),
served by aiohttp and answered through the storage layer's ``Store`` interface."""
