"""Built-in executors (the local machine). Remote transports come from plugins."""
