"""The Tiling checkbox in each tab, beside the size."""

from __future__ import annotations

from extensions.base import Panel, TabContext
from extensions.panel import control
from extensions.tiling.fields import TILING


def tiling_panel(tab: TabContext) -> Panel:
    tiling = control(TILING, info=True, elem_id=f"{tab.mode}-tiling")
    # an image made without tiling turns it off
    return Panel(inputs=[tiling], collect=lambda values: {TILING.name: bool(values[0])},
                 send=lambda fields: [fields.get(TILING.name, False)])
