"""The live bench page: a decimating tap on every frame (decimator.py, sans-I/O), the marks and labels
the page shows (board.py, sans-I/O), the state document read from the agent (view.py) and the aiohttp
routes that serve the page and push updates to it (server.py); the page itself is static/."""

from edge_agent.live.board import LiveBoard
from edge_agent.live.decimator import Decimator
from edge_agent.live.server import PUBLIC_PATHS, LivePage
from edge_agent.live.view import state_parts

__all__ = ["PUBLIC_PATHS", "Decimator", "LiveBoard", "LivePage", "state_parts"]
