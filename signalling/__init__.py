"""Socket.IO signalling: queue, consultation events, WebRTC relay, the connection-check peer."""
