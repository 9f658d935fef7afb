"""Contrastive Grad-CAM consistency (CGC): cross-entropy plus an InfoNCE loss that asks the Grad-CAM of an
augmented view to match the original's Grad-CAM moved by the same crop and flip (lines marked ``# CGC``).

Runs on the CPU in about a minute on built-in synthetic data (no download):

    python examples/03_cgc.py --epochs 3
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from exaug.augment import ReplayableSpatial
from exaug.data import SyntheticShapes
from exaug.losses import CGCLoss, cgc_heatmaps
from exaug.models import Classifier, LinearClassifier, create_encoder
from exaug.transforms import supcon_random_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1024, help="training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lam", type=float, default=0.5, help="weight of the CGC loss")
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
    spatial = ReplayableSpatial(scale=(0.08, 1.0))  # crop + flip whose parameters are kept        # CGC
    criterion = CGCLoss(temperature=0.5)                                                          # CGC
    layer = model.encoder.layer4  # the last block, as in the CGC paper                           # CGC

    for epoch in range(args.epochs):
        model.train()
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            augmented, params = spatial(images)                                                    # CGC
            # Differentiable Grad-CAM (second order) of the predicted class; the logits come from the same forward.
            maps, logits, predicted = cgc_heatmaps(model, layer, images)                           # CGC
            aug_maps, _, _ = cgc_heatmaps(model, layer, augmented, predicted)                      # CGC
            cgc = criterion(spatial.apply(maps, params), aug_maps)                                 # CGC
            loss = F.cross_entropy(logits, labels) + args.lam * cgc
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, CGC loss {cgc.item():.3f} "
              f"(chance level log(B) = {torch.log(torch.tensor(float(images.shape[0]))):.3f})")


if __name__ == "__main__":
    main()
