// Video-P2P front-end extension (served through WEB_DIRECTORY).
