"""The scorezoo demo: ``python app.py`` serves the bundled models on http://127.0.0.1:7860.

A thin shell: the app is :func:`scorezoo.demo.build_demo` (tabs Sample, Likelihood, Models); ``--help`` lists
the options. Needs ``pip install "scorezoo[app]"`` and no network.
"""

import os

# no telemetry and no Hub look-ups: the app serves local folders only
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scorezoo.demo import main  # noqa: E402

if __name__ == "__main__":
    main()
