"""The web page ``osdface ui``: restore photos in a browser (an optional extra: ``pip install 'osdface[ui]'``).

- ``jobs``: the work behind the page, with no gradio in it: uploads checked against the limits, read
  with the CLI's readers and pixel budget, restored with the model loaded once, written to a private
  temporary folder (results, faces, one zip), one clear line per bad file;
- ``page``: the gradio page over it (imported only by ``osdface ui``; the core package never imports gradio).
"""
