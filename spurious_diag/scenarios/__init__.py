"""Built-in scenarios that the demo and the notebook run without any download."""
