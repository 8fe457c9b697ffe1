"""lorakit.widgets: the notebook panels (ipywidgets + plotly), built on lorakit's public API."""
