"""Neural style transfer (Gatys, Ecker & Bethge 2016): paints --content in the style of --style.

    python -m apps.style_transfer --content=a.jpg --style=b.jpg --out=c.png \\
        --features_from=runs/cifar_vgg16        # a suite VGG classifier (offline)
    python -m apps.style_transfer --content=a.jpg --style=b.jpg --out=c.png   # ImageNet VGG-19

Writes under --model_dir: progress/step_NNNNN.png every --save_every steps, result.png (and
--out), content_style_result.png, history.csv and learning_curves.png (total, content, style
and total-variation loss), logs/ for TensorBoard, results.json with the start and final loss.
Running the same command again resumes; raising --steps continues.

Its options (defaults, help, checks) are the fields of suite.tasks.style_transfer.StyleConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.style_transfer import StyleTransferTask


def main() -> None:
    """Entry point (python -m apps.style_transfer, console script suite-style-transfer)."""
    run(StyleTransferTask)


if __name__ == "__main__":
    main()
