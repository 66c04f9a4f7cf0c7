"""The scripts' fields: which script, and its arguments, positional as A1111's."""

from __future__ import annotations

from models.fields import Field

MAX_ARGS = 32  # A1111's longest script takes 19
MAX_JOBS = 64  # a script's jobs by default (an X/Y/Z plot's cells, a prompt matrix's prompts, a file's lines)

SCRIPT_NAME = Field("script_name", "text", "", label="Script", rest="script_name",
                    help="an A1111 script by its title, any case (GET /sdapi/v1/scripts lists them); empty: none")
SCRIPT_ARGS = Field("script_args", "args", [], label="Script arguments", rest="script_args",
                    help="the script's arguments, positional as A1111's (GET /sdapi/v1/script-info describes them)")
