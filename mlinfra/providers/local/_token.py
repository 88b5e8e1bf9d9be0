"""A random bearer token for the serving endpoint, kept only in the (encrypted) state."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult
from pydantic import Field

from ._base import LocalProvider, LocalResource, ProviderInputs, gone

__all__ = ["GeneratedToken", "GeneratedTokenArgs", "GeneratedTokenProvider"]


class TokenInputs(ProviderInputs):
    nbytes: int = Field(32, ge=16, le=256)


class GeneratedTokenProvider(LocalProvider[TokenInputs]):
    """A new length means a new token (replace); there is nothing outside the state to read or
    delete, and a create killed before it returned left nothing behind."""

    inputs_model = TokenInputs
    replace_on = frozenset({"nbytes"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.parse(props)
        token = secrets.token_urlsafe(inputs.nbytes)
        # The id is shown in plans and logs, so it is random rather than derived from the token.
        return CreateResult(id_=uuid.uuid4().hex, outs={**inputs.model_dump(), "token": token})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not props.get("token"):
            return gone()
        return ReadResult(id_=id_, outs={"nbytes": props.get("nbytes"), "token": props["token"]})


@dataclass(frozen=True, kw_only=True)
class GeneratedTokenArgs:
    nbytes: pulumi.Input[int] = 32


class GeneratedToken(LocalResource[GeneratedTokenArgs], module="mlinfra", name="GeneratedToken"):
    """`token` is always a secret output."""

    provider_type = GeneratedTokenProvider
    computed = ("token",)
    secret_outputs = ("token",)
    token: pulumi.Output[str]
