"""Price rules: integer credits from a model's parameters, never from prompt text.

Media models (``pricing`` in the catalog entry)::

    {"base": 2, "terms": [
        {"type": "tiered", "parameters": ["width", "height"],
         "tiers": [{"up_to": 262144, "credits": 0}, {"up_to": 1048576, "credits": 2}, {"up_to": None, "credits": 4}]},
        {"type": "per_unit", "parameter": "duration", "credits": 3, "unit": 1},
    ]}

price = base + Σ terms, where a ``per_unit`` term costs ``credits`` for every
started ``unit`` of the parameter (2.5 s at 1 s units is 3 units) and a
``tiered`` term costs the credits of the first tier whose ``up_to`` is at least
the product of its parameters. All arithmetic is on integers and exact
fractions, so a price is the same on every machine.

Chat models price tokens: ``{"input_per_1k_tokens": 1, "output_per_1k_tokens": 2}``;
a turn costs the exact token price rounded up to a whole credit, and at least 1
credit when it used any tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from rivya_api.catalog.exceptions import PricingError
from rivya_api.catalog.spec import CatalogModel, PriceRule, PriceTerm


def _number(value: Any, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PricingError(f"Parameter {name!r} must be a number to be priced.", param=f"input.{name}")
    # str() first, so 2.1 is priced as the decimal 2.1, not its binary neighbour.
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def term_price(term: PriceTerm, params: Mapping[str, Any]) -> int:
    """Credits of one term for already validated (defaults applied) parameters."""
    for name in term.parameters:
        if name not in params:
            raise PricingError(f"Parameter {name!r} is needed to price this model.", param=f"input.{name}")
    if term.type == "per_unit":
        (name,) = term.parameters
        units = math.ceil(max(Fraction(0), _number(params[name], name)) / term.unit)
        return int(units) * term.credits
    product = Fraction(1)
    for name in term.parameters:
        product *= _number(params[name], name)
    for up_to, credits in term.tiers:
        if up_to is None or product <= up_to:
            return credits
    raise PricingError("No price tier matches these parameters.")  # the catalog check forbids this


def media_price(rule: PriceRule, params: Mapping[str, Any]) -> int:
    return rule.base + sum(term_price(term, params) for term in rule.terms)


def token_price(rule: PriceRule, *, input_tokens: int, output_tokens: int) -> int:
    """Exact token price rounded up to a whole credit; at least 1 when any token was used."""
    if input_tokens < 0 or output_tokens < 0:
        raise PricingError("Token counts cannot be negative.")
    thousandths = input_tokens * rule.input_per_1k_tokens + output_tokens * rule.output_per_1k_tokens
    credits = -(-thousandths // 1000)  # ceil on integers
    if input_tokens + output_tokens > 0:
        credits = max(1, credits)
    return credits


def pricing_public(model: CatalogModel) -> dict[str, Any]:
    """The ``pricing`` object of the public model: the rule, its summary, and the default price."""
    rule = model.pricing
    if model.kind == "chat":
        return {
            "currency": "credits",
            "input_per_1k_tokens": rule.input_per_1k_tokens,
            "output_per_1k_tokens": rule.output_per_1k_tokens,
            "minimum_per_turn": 1,
            "summary": pricing_summary(model),
        }
    terms: list[dict[str, Any]] = []
    for term in rule.terms:
        if term.type == "per_unit":
            terms.append(
                {"type": "per_unit", "parameter": term.parameters[0], "unit": term.unit, "credits": term.credits}
            )
        else:
            tiers = [{"up_to": up_to, "credits": credits} for up_to, credits in term.tiers]
            terms.append({"type": "tiered", "parameters": list(term.parameters), "tiers": tiers})
    return {
        "currency": "credits",
        "base": rule.base,
        "terms": terms,
        "default_credits": default_price(model),
        "summary": pricing_summary(model),
    }


def default_parameters(model: CatalogModel) -> dict[str, Any]:
    """Every top-level default of the model's parameters schema."""
    properties = model.parameters.get("properties") or {}
    return {
        name: prop["default"] for name, prop in properties.items() if isinstance(prop, Mapping) and "default" in prop
    }


def default_price(model: CatalogModel) -> int | None:
    """The price of a request that sets only what is required (None if a priced parameter has no default)."""
    try:
        return media_price(model.pricing, default_parameters(model))
    except PricingError:
        return None


def pricing_summary(model: CatalogModel) -> str:
    """One English sentence describing the price rule, for the docs and the API."""
    rule = model.pricing
    if model.kind == "chat":
        return (
            f"{rule.input_per_1k_tokens} {_credits(rule.input_per_1k_tokens)} per 1,000 input tokens and "
            f"{rule.output_per_1k_tokens} {_credits(rule.output_per_1k_tokens)} per 1,000 output tokens, "
            "rounded up to a whole credit per turn (at least 1)."
        )
    parts = [f"{rule.base} {_credits(rule.base)} per generation"]
    for term in rule.terms:
        if term.type == "per_unit":
            name = term.parameters[0]
            unit = f"every {term.unit} units of {name}" if term.unit != 1 else f"every unit of {name} (rounded up)"
            parts.append(f"{term.credits} {_credits(term.credits)} for {unit}")
        else:
            product = " × ".join(term.parameters)
            tiers = []
            lower: int | None = None
            for up_to, credits in term.tiers:
                if up_to is None:
                    bound = f"above {lower}" if lower is not None else "for any value"
                else:
                    bound = f"up to {up_to}"
                tiers.append(f"{credits} {bound}")
                lower = up_to
            parts.append(f"plus, by {product}: " + ", ".join(tiers))
    return "; ".join(parts) + "."


def _credits(amount: int) -> str:
    return "credit" if amount == 1 else "credits"
