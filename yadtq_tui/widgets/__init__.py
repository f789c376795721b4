"""The dashboard's widgets: task table, worker panel, status bar, banner and submit form."""

from yadtq_tui.widgets.banner import Banner
from yadtq_tui.widgets.live_table import LiveTable
from yadtq_tui.widgets.status_bar import StatusBar
from yadtq_tui.widgets.submit_form import SubmitForm
from yadtq_tui.widgets.task_detail import TaskDetail
from yadtq_tui.widgets.task_table import TaskTable
from yadtq_tui.widgets.text_line import TextLine
from yadtq_tui.widgets.worker_panel import WorkerPanel

__all__ = ["Banner", "LiveTable", "StatusBar", "SubmitForm", "TaskDetail", "TaskTable",
           "TextLine", "WorkerPanel"]
