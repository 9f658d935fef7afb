"""Cross-entropy training with EDDA occlusions: a plain classification loop plus a handful of lines (``# EDDA``).

Each batch gets, for half of its images, a copy with the most salient 20% of the pixels occluded (target: a
lower-confidence soft label) and a copy with the least salient 20% occluded (target: the label). Runs on the CPU
in about a minute on built-in synthetic data (no download):

    python examples/02_edda.py --epochs 3
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from exaug.augment import EDDAAugment
from exaug.data import SyntheticShapes
from exaug.models import Classifier, LinearClassifier, create_encoder
from exaug.transforms import supcon_random_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1024, help="training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ratio", type=float, default=0.5, help="fraction of each batch that gets EDDA copies")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    train = SyntheticShapes("train", args.samples, transform=supcon_random_view(32, mean, std))
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True)
    encoder = create_encoder("resnet18", width=0.125)
    model = Classifier(encoder, LinearClassifier(encoder.num_features, train.num_classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    augment = EDDAAugment("gradcam", salient_fraction=0.2, target="soft",                         # EDDA
                          explainer_options={"target_layer": "encoder.layer2"})

    for epoch in range(args.epochs):
        model.train()
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            n = int(args.ratio * images.shape[0])
            batch = augment(images[:n], labels[:n], model)  # model untouched (eval inside)       # EDDA
            inputs = torch.cat([images, batch.images])                                              # EDDA
            targets = torch.cat([F.one_hot(labels, train.num_classes).float(), batch.targets])      # EDDA
            logits = model(inputs)
            loss = F.cross_entropy(logits, targets)  # probability targets: soft-target cross-entropy
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        # The EDDA property on the last batch: occluding salient pixels should cost more confidence.
        with torch.no_grad():
            model.eval()
            p = model(batch.images).softmax(1).gather(1, batch.labels[:, None]).squeeze(1)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, label probability salient-occluded "
              f"{p[batch.salient].mean():.3f} vs non-salient-occluded {p[batch.nonsalient].mean():.3f}")


if __name__ == "__main__":
    main()
