"""The Archetype AI lens side of the agent: REST client, session lifecycle, windower, websocket
streamer and inference reader.

Data path: Frame -> `Windower` (sans-I/O) -> `WindowPacer` (sans-I/O) -> `Streamer` (websocket) ->
lens -> `session.read` / SSE -> `LensInference` -> detection.
"""
