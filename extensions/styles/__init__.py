"""A1111's prompt styles: saved prompts added to a request's own (styles.csv), as the `Styles` extension."""

from extensions.styles.extension import Styles

__all__ = ["Styles"]
