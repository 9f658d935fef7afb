"""A SupContrast-style training loop, turned into ExConB with a handful of lines (marked ``# ExConB``).

Runs on the CPU in about a minute on built-in synthetic data (no download):

    python examples/01_drop_in_supcon.py --epochs 3

Remove the ``# ExConB`` lines and use ``SupConLoss`` to get back the plain SupCon loop.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import exaug
from exaug.data import SyntheticShapes
from exaug.losses import ExConBLoss
from exaug.models import Classifier, LinearClassifier, SupConModel, create_encoder
from exaug.transforms import ExConTransform, standard_view, supcon_random_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1024, help="training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    transform = ExConTransform(supcon_random_view(32, mean, std), standard_view(32, mean, std))  # ExConB: 3 views
    train = SyntheticShapes("train", args.samples, transform=transform)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True)

    encoder = create_encoder("resnet18", width=0.125)
    model = SupConModel(encoder, head="mlp", feat_dim=64).to(device)               # encoder + projection head
    classifier = LinearClassifier(encoder.num_features, train.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    classifier_optimizer = torch.optim.SGD(classifier.parameters(), lr=0.5, momentum=0.9)

    criterion = ExConBLoss(temperature=0.1)                                               # ExConB (was SupConLoss)
    augment = exaug.ExplanationMaskAugment("gradcam", mode="exconb",                      # ExConB
                                           explainer_options={"target_layer": "encoder.layer2"})
    explained = Classifier(model.encoder, classifier)  # images -> logits, shares the encoder  # ExConB

    for epoch in range(args.epochs):
        model.train()
        for (standard, view1, view2), labels in loader:
            standard, view1, view2, labels = (t.to(device) for t in (standard, view1, view2, labels))
            batch = augment(standard, (view1, view2), labels, explained)                  # ExConB
            features = batch.as_views(model(batch.images))                                # (N', 2, D)
            loss = criterion(features, batch.labels, batch.background)                    # ExConB
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        # Algorithm 1: a linear-classifier epoch on frozen features (also what the explanations use).
        model.eval()
        for (standard, view1, _), labels in loader:
            with torch.no_grad():
                feats = model.encoder(view1.to(device))
            clf_loss = F.cross_entropy(classifier(feats), labels.to(device))
            classifier_optimizer.zero_grad()
            clf_loss.backward()
            classifier_optimizer.step()
        stats = batch.stats
        print(f"epoch {epoch + 1}: contrastive loss {loss.item():.3f}, classifier loss {clf_loss.item():.3f}, "
              f"masks correct {stats['masked_correct']:.2f}, background rows {stats['background']:.0f}")


if __name__ == "__main__":
    main()
