"""The report's figures as PNG bytes, drawn with a Korean font (Agg backend, no display needed).

No font on a fresh machine has Hangul, so matplotlib and wordcloud would draw boxes: the
NanumGothic that the koreanize-matplotlib package ships is used for every label and word cloud.
The package is located, not imported (its import changes global matplotlib state and uses
distutils, which Python 3.12 removed).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from dsum.util.errors import UserError

FONT_FILE = "NanumGothic.ttf"
SPLIT_COLORS = {"train": "#1f77b4", "dev": "#ff7f0e", "test": "#2ca02c"}


def korean_font_path() -> Path:
    """NanumGothic.ttf inside the installed koreanize-matplotlib package."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("no Korean font: install koreanize-matplotlib (it ships NanumGothic), e.g. `uv sync`")
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / FONT_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall koreanize-matplotlib (it ships NanumGothic)")
    return path


class Plotter:
    """Draws each figure with the Korean font set as matplotlib's font family."""

    def __init__(self, font_path: Path):
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import font_manager

        font_manager.fontManager.addfont(str(font_path))
        self.font_path = font_path
        self.family = font_manager.FontProperties(fname=str(font_path)).get_name()
        # Applied around each figure only, so importing code keeps its own settings.
        self.rc = {"font.family": [self.family], "axes.unicode_minus": False, "figure.dpi": 100}

    def _figure(self, rows: int, cols: int, width: float, height: float):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        return fig, [ax for row in axes for ax in row]

    def _png(self, fig) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()

    def histograms(self, title: str, panels: Sequence[tuple[str, Mapping[str, Sequence[float]], bool]]) -> bytes:
        """One panel per measure: (label, {split: values}, integer-valued); splits overlaid as
        densities so that splits of different sizes compare."""
        import matplotlib
        import numpy as np

        with matplotlib.rc_context(self.rc):
            fig, axes = self._figure(1, len(panels), 4.2 * len(panels), 3.4)
            fig.suptitle(title)
            for ax, (label, by_split, integer) in zip(axes, panels):
                values = [v for vs in by_split.values() for v in vs]
                if integer and max(values) - min(values) <= 60:
                    bins = np.arange(min(values), max(values) + 2) - 0.5
                else:
                    bins = np.histogram_bin_edges(values, bins=40)
                for split, split_values in by_split.items():
                    ax.hist(split_values, bins=bins, density=True, histtype="step", linewidth=1.6,
                            color=SPLIT_COLORS.get(split), label=f"{split} ({len(split_values)})")
                ax.set_xlabel(label)
                ax.set_ylabel("비율 (density)")
                ax.legend(fontsize=8)
            return self._png(fig)

    def cumulative(self, title: str, panels: Sequence[tuple[str, Mapping[str, Sequence[float]], int | None]]) -> bytes:
        """Empirical CDFs per split, one panel per measure, with the max length marked."""
        import matplotlib
        import numpy as np

        with matplotlib.rc_context(self.rc):
            fig, axes = self._figure(1, len(panels), 4.6 * len(panels), 3.6)
            fig.suptitle(title)
            for ax, (label, by_split, limit) in zip(axes, panels):
                for split, values in by_split.items():
                    ordered = np.sort(values)
                    shares = np.arange(1, len(ordered) + 1) / len(ordered)
                    ax.step(ordered, shares, where="post", color=SPLIT_COLORS.get(split), label=split)
                if limit is not None:
                    ax.axvline(limit, color="red", linestyle="--", linewidth=1, label=f"최대 길이 {limit}")
                for share in (0.95, 0.99):
                    ax.axhline(share, color="grey", linestyle=":", linewidth=0.8)
                ax.set_xlabel(label)
                ax.set_ylabel("누적 비율 (share ≤ x)")
                ax.legend(fontsize=8, loc="lower right")
            return self._png(fig)

    def topic_bars(self, by_split: Mapping[str, Sequence[tuple[str, int]]]) -> bytes:
        """Horizontal bars of the most frequent topics, one panel per split."""
        import matplotlib

        with matplotlib.rc_context(self.rc):
            tallest = max(len(pairs) for pairs in by_split.values())
            fig, axes = self._figure(1, len(by_split), 5.0 * len(by_split), 1.2 + 0.28 * tallest)
            fig.suptitle("주제별 대화 수 (rows per topic, most frequent)")
            for ax, (split, pairs) in zip(axes, by_split.items()):
                names = [name for name, _ in pairs][::-1]
                ax.barh(names, [count for _, count in pairs][::-1], color=SPLIT_COLORS.get(split))
                ax.set_title(split)
                ax.set_xlabel("대화 수 (rows)")
                ax.tick_params(axis="y", labelsize=8)
            return self._png(fig)

    def token_bars(self, counts: Mapping[str, Mapping[str, int]], rows: Mapping[str, int]) -> bytes:
        """#...# tokens per 100 dialogues, grouped by split (rates, so splits of any size compare)."""
        import matplotlib
        import numpy as np

        tokens = sorted({t for c in counts.values() for t in c}, key=lambda t: -sum(c.get(t, 0) for c in counts.values()))
        with matplotlib.rc_context(self.rc):
            fig, axes = self._figure(1, 1, 8, 1.4 + 0.35 * max(len(tokens), 1))
            ax = axes[0]
            height = 0.8 / max(len(counts), 1)
            positions = np.arange(len(tokens))
            for k, (split, split_counts) in enumerate(counts.items()):
                rates = [100 * split_counts.get(t, 0) / max(rows[split], 1) for t in tokens]
                ax.barh(positions + k * height, rates, height=height, color=SPLIT_COLORS.get(split), label=split)
            ax.set_yticks(positions + height * (len(counts) - 1) / 2, tokens)
            ax.invert_yaxis()
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlabel("대화 100개당 개수 (per 100 dialogues, log scale)")
            ax.set_title("특수 토큰 (#...# tokens in dialogues)")
            ax.legend(fontsize=8)
            return self._png(fig)

    def word_cloud(self, frequencies: Mapping[str, int]) -> bytes:
        from wordcloud import WordCloud

        cloud = WordCloud(font_path=str(self.font_path), width=900, height=450, background_color="white",
                          max_words=150, random_state=0, collocations=False)
        cloud.generate_from_frequencies(dict(frequencies))
        buffer = io.BytesIO()
        cloud.to_image().save(buffer, format="PNG")
        return buffer.getvalue()
