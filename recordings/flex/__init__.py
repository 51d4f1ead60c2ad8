"""Flex linkage: TaskRouter events in, the worker and queue directory, linking recordings to the
tasks (conversations) that handled them, and writing the portal's ``url_provider`` into those
tasks' ``conversations.media`` so that Flex Insights plays recordings through the portal."""
