"""What every image-classification app shares: its test-set report and its serving signatures.

The MNIST app and the classifier app are ImageClassificationTasks; each adds its own data and
models. `report()` turns test-set probabilities into results.json's numbers (top-1, top-5,
confusion matrix) and the figures (confusion_matrix.png, misclassified.png).
"""
from __future__ import annotations

import numpy as np

from suite.tasks.base import Task


class ImageClassificationTask(Task):
    best_checkpoint = ("val_accuracy", "max")
    meaning_keys = ("class_names", "num_classes")
    figures = ("confusion_matrix.png", "misclassified.png")
    class_names: list[str] = []  # set by load_data
    image_shape: tuple[int, int, int] | None = None  # set by load_data
    crop_fraction: float = 1.0  # evaluation's centre crop of an image of another size

    def export_metadata(self) -> dict:
        return {"class_names": list(self.class_names),
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "num_classes": len(self.class_names), "crop_fraction": self.crop_fraction}

    @classmethod
    def serving_signatures(cls, model, metadata: dict):
        from suite.export.classifier import classifier_metadata, classifier_signatures

        classifier_metadata(model, metadata.get("class_names"))  # names fit the model's outputs
        return classifier_signatures(model, metadata.get("crop_fraction", 1.0))

    def report(self, run, probabilities: np.ndarray, labels: np.ndarray, images=None,
               title: str = "") -> dict:
        """top-1/top-5 accuracy and the confusion matrix of `probabilities` [N, K] against
        `labels` [N]; prints the accuracy line and, on the chief, draws the confusion matrix and
        (given the test `images` at the model's size) the misclassified images."""
        from suite.viz import plots
        from suite.viz.confusion import confusion_matrix, plot_confusion_matrix

        num_classes = probabilities.shape[-1]
        predictions = np.argmax(probabilities, axis=-1)
        correct = int(np.sum(predictions == labels))
        top1 = correct / max(len(labels), 1)
        # With 5 classes or fewer every label is in the top 5: nothing to report.
        top5 = None
        if num_classes > 5:
            best5 = np.argsort(-probabilities, axis=-1)[:, :5]
            top5 = float(np.mean((best5 == labels[:, None]).any(axis=-1)))
        matrix = confusion_matrix(labels, predictions, num_classes)
        top5_text = f", top-5 {100 * top5:.2f}%" if top5 is not None else ""
        print(f"Test accuracy: {100 * top1:.2f}% ({correct}/{len(labels)}){top5_text}", flush=True)
        if run.is_chief:
            plot_confusion_matrix(matrix, self.class_names or [str(i) for i in range(num_classes)],
                                  run.output_path("confusion_matrix.png"),
                                  title=f"{title}: top-1 {100 * top1:.1f}%")
            if images is not None:
                plots.plot_misclassified(images, labels, predictions,
                                         run.output_path("misclassified.png"))
        return {"test_accuracy": top1, "test_top1_accuracy": top1, "test_top5_accuracy": top5,
                "test_examples": int(len(labels)), "class_names": list(self.class_names),
                "confusion_matrix": matrix.tolist() if num_classes <= 100 else None}
