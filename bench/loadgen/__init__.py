"""The gateway benchmark's processes: a fast OpenAI-shaped upstream and a load client."""
