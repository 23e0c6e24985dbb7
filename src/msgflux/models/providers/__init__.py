"""Built-in providers; importing this package registers them."""

from msgflux.models.providers import anthropic as anthropic
from msgflux.models.providers import azure as azure
from msgflux.models.providers import bedrock as bedrock
from msgflux.models.providers import cerebras as cerebras
from msgflux.models.providers import deepseek as deepseek
from msgflux.models.providers import gemini as gemini
from msgflux.models.providers import groq as groq
from msgflux.models.providers import local as local  # llama_cpp itself loads lazily
from msgflux.models.providers import mistral as mistral
from msgflux.models.providers import ollama as ollama
from msgflux.models.providers import openai as openai
from msgflux.models.providers import openai_compatible as openai_compatible
from msgflux.models.providers import openrouter as openrouter
from msgflux.models.providers import sambanova as sambanova
from msgflux.models.providers import together as together
from msgflux.models.providers import vertex as vertex
from msgflux.models.providers import vllm as vllm
