"""The scorezoo demo: ``python app.py`` serves the zoo on http://127.0.0.1:7860.

The zoo is :func:`scorezoo.zoo.registry`: the bundled models and those in the local Hugging Face cache are
served, the rest are listed; ``--model FOLDER`` (repeatable) adds pipeline folders. A thin shell: the app is
:func:`scorezoo.demo.build_demo` (tabs Sample, Likelihood, Models); ``--help`` lists the options. Needs
``pip install "scorezoo[app]"`` and no network.
"""

import os

# no telemetry and no Hub look-ups: the app serves local folders only
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scorezoo.demo import main  # noqa: E402

if __name__ == "__main__":
    main()
