"""Model providers: one interface (`Provider`), several ways to get a proposal."""

from synth.providers.base import Proposal, ProposeRequest, Provider, ProviderError
from synth.providers.openai_api import ChatProvider, ResponsesProvider, make_provider

__all__ = [
    "ChatProvider",
    "Proposal",
    "ProposeRequest",
    "Provider",
    "ProviderError",
    "ResponsesProvider",
    "make_provider",
]
