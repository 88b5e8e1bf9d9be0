"""Resource providers, one package per target: `local` now, `kubernetes` on the roadmap."""

__all__: list[str] = []
