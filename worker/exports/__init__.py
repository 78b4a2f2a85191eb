"""Export artifacts of a trained model: ``saved_model``, ``onnx`` and ``litert``.

``formats`` (plain Python, read by the API too) names the formats, their files and their
metadata; ``artifacts`` builds each artifact with Keras' own ``model.export``; ``checks``
runs it in its own runtime and measures its agreement with the served model. The job
that ties them together is ``worker.export_job``.
"""
