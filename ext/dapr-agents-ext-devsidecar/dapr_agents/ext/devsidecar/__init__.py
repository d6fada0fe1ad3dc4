"""A Dapr-compatible sidecar in pure Python for developing and testing Dapr agents.

Start one in-process with :class:`DevSidecar`, from the command line with
``dapr-devsidecar run --app-id myapp --resources-path components -- python app.py``, or in tests
through the pytest plugin's ``dapr_sidecar`` fixtures. The official Dapr SDK talks to it over
the real gRPC protocol, unmodified.
"""

from ._app_channel import AppHealthCheck
from ._components import SUPPORTED_TYPES, Component, load_components
from ._errors import ComponentError, DevSidecarError
from ._scripted_llm import ScriptedChatServer, ScriptedReply, ScriptedToolCall, load_script
from ._sidecar import DevSidecar
from .version import __version__

__all__ = [
    "SUPPORTED_TYPES",
    "AppHealthCheck",
    "Component",
    "ComponentError",
    "DevSidecar",
    "DevSidecarError",
    "ScriptedChatServer",
    "ScriptedReply",
    "ScriptedToolCall",
    "__version__",
    "load_components",
    "load_script",
]
