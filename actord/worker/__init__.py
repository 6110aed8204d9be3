"""The worker role: an OS process running many processes as asyncio tasks on uvloop."""
