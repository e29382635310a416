"""The admin HTTP API's wire schema, shared by the broker, the operator and the ``floe`` command.

Every request and response body of a broker's admin port is a pydantic model
here: :mod:`floe_api.public` for what people and the operator call
(``/v1/...``), :mod:`floe_api.internal` for the broker <-> controller calls
(``/internal/v1/...``). This package imports nothing of Floe, so either side
can depend on it without depending on the other (an import-linter contract
keeps it so).
"""
