"""The browser demo: a Gradio page that submits prompts to the queue and shows what the workers found."""
