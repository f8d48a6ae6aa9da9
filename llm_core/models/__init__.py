from llm_core.models.gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
