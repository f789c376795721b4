"""The dashboard's screens: the main dashboard, task detail, id prompt, reset confirmation, help,
periodic schedules."""

from yadtq_tui.screens.confirm_reset import ConfirmResetScreen
from yadtq_tui.screens.dashboard import DashboardScreen
from yadtq_tui.screens.detail import DetailScreen
from yadtq_tui.screens.help import HelpScreen
from yadtq_tui.screens.schedules import SchedulesScreen
from yadtq_tui.screens.task_id_prompt import TaskIdPrompt

__all__ = ["ConfirmResetScreen", "DashboardScreen", "DetailScreen", "HelpScreen", "SchedulesScreen",
           "TaskIdPrompt"]
